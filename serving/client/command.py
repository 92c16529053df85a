"""Ask a TF Serving-compatible server for NLI predictions, metadata or status.

Usage:
    python -m serving.client --premise "A man plays guitar." \
        --hypothesis "A man makes music."
    python -m serving.client --tsv dev.tsv --format jsonl
    python -m serving.client --rest --tsv dev.tsv
    python -m serving.client metadata
    python -m serving.client status --rest
"""

import json
import logging
import sys

from keras_metaopt import cli
from keras_metaopt.formats import LABEL_NAMES as LABELS
from serving.saved_model_layout import PREDICT_SIGNATURE

COMMANDS = ("predict", "metadata", "status")
DEFAULT_BATCH_SIZE = 32  # when the server does not say its limit
MAX_FIELD_BYTES = 10_000  # per premise or hypothesis of a --tsv row
GRPC_SERVER, REST_SERVER = "127.0.0.1:8500", "127.0.0.1:8501"
PROG = "python -m serving.client"


def build_parser():
    parser = cli.parser(
        PROG,
        description=(
            "predict (default): send premise/hypothesis pairs to the model and "
            "print one line per pair, as TSV (label, class probabilities; plus "
            "accuracy when the TSV has labels) or JSON lines. A TSV is sent in "
            "batches within the server's request limit. metadata / status: print "
            "GetModelMetadata / GetModelStatus as JSON. Speaks TF Serving's gRPC "
            "API, or its REST API with --rest, so it works against "
            "tensorflow_model_server too."
        ),
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="predict",
        choices=COMMANDS,
        help="what to ask for (default: %(default)s)",
    )
    parser.add_argument(
        "--server",
        help=f"HOST:PORT of the server (default: {GRPC_SERVER}, or {REST_SERVER} "
        "with --rest)",
    )
    parser.add_argument(
        "--rest",
        action="store_true",
        help="use the REST API (POST /v1/models/NAME:predict) instead of gRPC",
    )
    parser.add_argument(
        "--model-name", default="nli", help="model name (default: %(default)s)"
    )
    parser.add_argument(
        "--signature-name",
        default=PREDICT_SIGNATURE,
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
        help="file of pairs, read as the trainers read theirs: a header naming "
        "premise (or sentence1), hypothesis (or hypo, sentence2) and optionally "
        "label (or gold_label), one pair per line, tab-separated, no quoting; "
        "labels are names (entailment, neutral, contradiction), never numbers",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="pairs per request with --tsv (default: the server's limit, from its "
        f"metadata, or {DEFAULT_BATCH_SIZE} for servers that do not say; a larger "
        "value is cut to the server's limit)",
    )
    parser.add_argument(
        "--format",
        choices=("tsv", "jsonl"),
        default="tsv",
        help="per-pair output: TSV lines or JSON lines with the TSV line number "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for each reply (default: %(default)s)",
    )
    parser.add_argument(
        "--ssl-ca-cert",
        help="PEM file of the CA (or self-signed server cert) to trust; enables "
        "TLS (HTTPS with --rest)",
    )
    parser.add_argument(
        "--ssl-target-name",
        help="gRPC only: host name to check the server certificate against, when "
        "it differs from the --server host",
    )
    cli.add_log_level_flag(parser, default="WARNING")
    return parser


def connect(args):
    """The gRPC or REST client for ``args``, imported lazily (no TensorFlow)."""
    common = dict(
        model_name=args.model_name,
        signature_name=args.signature_name,
        version=args.version,
        version_label=args.version_label,
        timeout=args.timeout,
    )
    if args.rest:
        from serving.client.rest_client import RestNliClient

        return RestNliClient(args.server, ca_file=args.ssl_ca_cert, **common)
    from serving.client.proto_imports import import_protos_without_tensorflow

    import_protos_without_tensorflow()
    from serving.client.nli_client import NliClient

    root = None
    if args.ssl_ca_cert:
        with open(args.ssl_ca_cert, "rb") as f:
            root = f.read()
    return NliClient(
        args.server,
        root_certificates=root,
        ssl_target_name=args.ssl_target_name,
        **common,
    )


def failure(args, err) -> str | None:
    """A one-line description of a server or connection failure (else None)."""
    if args.rest:
        from serving.client.rest_client import RestError

        if isinstance(err, RestError):
            return f"{args.server} answered HTTP {err.status}: {err}"
        if isinstance(err, OSError):
            return f"cannot reach http(s)://{args.server}: {err}"
        return None
    import grpc

    if isinstance(err, grpc.RpcError):
        return f"{args.server} answered {err.code().name}: {err.details()}"
    return None


def batch_size(args, client, rows: int, log) -> int:
    """Pairs per request: the flag, cut to the server's limit when it says one."""
    if rows <= 1:
        return 1
    limits = client.request_limits() or {}
    limit = limits.get("max_request_batch_size")
    size = args.batch_size or limit or DEFAULT_BATCH_SIZE
    if limit is not None and size > limit:
        log.info("--batch-size %d is over the server's limit; using %d", size, limit)
        size = limit
    return size


def predict(args, client, premises, hypotheses, gold, lines, log) -> None:
    """Send the pairs in batches; print one line per pair as it comes back."""
    size = batch_size(args, client, len(premises), log)
    out = sys.stdout
    if args.format == "tsv":
        out.write("label\t" + "\t".join(f"p_{name}" for name in LABELS) + "\n")
    correct = 0
    for start in range(0, len(premises), size):
        stop = start + size
        labels, probs = client.predict(premises[start:stop], hypotheses[start:stop])
        for i, (label, row) in enumerate(zip(labels, probs, strict=True), start):
            if args.format == "tsv":
                out.write(label + "\t" + "\t".join(f"{p:.6f}" for p in row) + "\n")
            else:
                record = {} if lines is None else {"line": lines[i]}
                record["label"] = label
                record["probabilities"] = {
                    name: round(float(p), 6)
                    for name, p in zip(LABELS, row, strict=True)
                }
                if gold is not None:
                    record["gold"] = LABELS[gold[i]]
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if gold is not None and label == LABELS[gold[i]]:
                correct += 1
        out.flush()
        log.info("%d/%d pairs done", min(stop, len(premises)), len(premises))
    if gold:
        summary = f"accuracy {correct / len(gold):.4f} ({correct}/{len(gold)})"
        if args.format == "tsv":
            out.write(f"# {summary}\n")
        else:
            print(summary, file=sys.stderr)


def check_field_sizes(path, pairs) -> None:
    """Refuses a premise or hypothesis over `MAX_FIELD_BYTES` (`path:line: …`)."""
    for line, premise, hypothesis in zip(
        pairs.line_numbers, pairs.premises, pairs.hypotheses, strict=True
    ):
        for name, value in (("premise", premise), ("hypothesis", hypothesis)):
            if len(value.encode("utf-8")) > MAX_FIELD_BYTES:
                raise ValueError(
                    f"{path}:{line}: {name} is longer than {MAX_FIELD_BYTES} bytes"
                )


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    single = args.premise is not None or args.hypothesis is not None
    if args.command != "predict":
        if single or args.tsv is not None:
            parser.error(
                f"{args.command} takes no pairs (--premise/--hypothesis/--tsv)"
            )
    else:
        if single and (args.premise is None or args.hypothesis is None):
            parser.error("--premise and --hypothesis go together")
        if single == (args.tsv is not None):
            parser.error("give either --premise/--hypothesis or --tsv")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.server is None:
        args.server = REST_SERVER if args.rest else GRPC_SERVER
    cli.configure_logging(args.log_level)
    log = logging.getLogger("serving.client")
    gold = lines = None
    try:
        if args.command == "predict":
            if single:
                premises, hypotheses = [args.premise], [args.hypothesis]
            else:
                from keras_metaopt.data.tsv import read_pair_tsv

                pairs = read_pair_tsv(args.tsv)
                check_field_sizes(args.tsv, pairs)
                premises, hypotheses = pairs.premises, pairs.hypotheses
                gold, lines = pairs.labels, pairs.line_numbers
        client = connect(args)
    except (OSError, ValueError) as err:
        cli.error(PROG, err)
        return cli.EXIT_BAD_INPUT
    try:
        if args.command == "predict":
            predict(args, client, premises, hypotheses, gold, lines, log)
        else:
            answer = (
                client.metadata() if args.command == "metadata" else client.status()
            )
            print(json.dumps(answer, indent=1, ensure_ascii=False))
    except Exception as err:
        message = failure(args, err)
        if message is None:
            raise
        cli.error(PROG, message)
        return cli.EXIT_ERROR
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
