"""Ask a TF Serving-compatible server for NLI predictions.

Usage:
    python -m serving.client --premise "A man plays guitar." \
        --hypothesis "A man makes music."
    python -m serving.client --tsv dev.tsv --batch-size 32
"""

import argparse
import logging
import os
import sys

from serving.log_level import add_log_level_flag

LABELS = ("entailment", "neutral", "contradiction")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description=(
            "Send premise/hypothesis pairs to PredictionService.Predict and print "
            "the label and the class probabilities as TSV (plus accuracy when the "
            "TSV has labels). Works against tensorflow_model_server too."
        ),
    )
    parser.add_argument(
        "--server",
        default="127.0.0.1:8500",
        help="host:port of the gRPC server (default: %(default)s)",
    )
    parser.add_argument(
        "--model-name", default="nli", help="ModelSpec.name (default: %(default)s)"
    )
    parser.add_argument(
        "--signature-name",
        default="serving_default",
        help="signature taking premise/hypothesis strings (default: %(default)s)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="ask for this model version")
    which.add_argument(
        "--version-label", help="ask for the version behind this label (e.g. stable)"
    )
    parser.add_argument("--premise", help="premise of a single pair")
    parser.add_argument("--hypothesis", help="hypothesis of a single pair")
    parser.add_argument(
        "--tsv",
        help="file of pairs: header premise<TAB>hypothesis[<TAB>label], one pair per "
        "line, no quoting; labels are names or 0/1/2",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="pairs per request with --tsv (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for each reply (default: %(default)s)",
    )
    parser.add_argument(
        "--ssl-ca-cert",
        help="PEM file of the CA (or self-signed server cert) to trust; enables TLS",
    )
    parser.add_argument(
        "--ssl-target-name",
        help="host name to check the server certificate against, when it differs "
        "from the --server host",
    )
    add_log_level_flag(parser, default="WARNING")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    single = args.premise is not None or args.hypothesis is not None
    if single and (args.premise is None or args.hypothesis is None):
        parser.error("--premise and --hypothesis go together")
    if single == (args.tsv is not None):
        parser.error("give either --premise/--hypothesis or --tsv")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("serving.client")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import grpc

    from serving.nli_client import NliClient
    from serving.pair_tsv import PairTsv

    try:
        if single:
            premises, hypotheses, gold = [args.premise], [args.hypothesis], None
        else:
            pairs = PairTsv(args.tsv)
            premises, hypotheses, gold = pairs.premises, pairs.hypotheses, pairs.labels
        root = None
        if args.ssl_ca_cert:
            with open(args.ssl_ca_cert, "rb") as f:
                root = f.read()
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    client = NliClient(
        args.server,
        model_name=args.model_name,
        signature_name=args.signature_name,
        version=args.version,
        version_label=args.version_label,
        timeout=args.timeout,
        root_certificates=root,
        ssl_target_name=args.ssl_target_name,
    )
    print("label\t" + "\t".join(f"p_{name}" for name in LABELS))
    correct = 0
    try:
        for start in range(0, len(premises), args.batch_size):
            stop = start + args.batch_size
            labels, probs = client.predict(premises[start:stop], hypotheses[start:stop])
            for i, (label, row) in enumerate(zip(labels, probs, strict=True)):
                print(label + "\t" + "\t".join(f"{p:.6f}" for p in row))
                if gold is not None and label == LABELS[gold[start + i]]:
                    correct += 1
            log.info("%d/%d pairs done", min(stop, len(premises)), len(premises))
    except grpc.RpcError as err:
        print(
            f"error: {args.server} answered {err.code().name}: {err.details()}",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()
    if gold is not None and gold:
        print(f"# accuracy {correct / len(gold):.4f} ({correct}/{len(gold)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
