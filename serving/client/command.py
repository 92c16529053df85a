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
from serving.metadata_fields import REQUEST_LIMITS_FIELD, SIGNATURE_DEF_FIELD
from serving.saved_model_layout import CLIENT_OUTPUTS, PREDICT_SIGNATURE, TEXT_INPUTS

COMMANDS = ("predict", "metadata", "status")
DEFAULT_BATCH_SIZE = 32  # when the server does not say its limit
MAX_FIELD_BYTES = 10_000  # per premise or hypothesis of a --tsv row
# TF Serving's ports: gRPC 8500, REST 8501 (a --server without a port gets its
# protocol's).
DEFAULT_PORTS = {"grpc": 8500, "rest": 8501}
DEFAULT_HOST = "127.0.0.1"
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
        help=f"HOST[:PORT] of the server; with --rest also http://HOST[:PORT] or "
        f"https://HOST[:PORT] (TLS). The port defaults to TF Serving's: "
        f"{DEFAULT_PORTS['grpc']} for gRPC, {DEFAULT_PORTS['rest']} for REST "
        f"(default: {DEFAULT_HOST})",
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
        help="seconds to wait for each reply, > 0 (default: %(default)s)",
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

        return RestNliClient(
            args.server, ca_file=args.ssl_ca_cert, tls=args.tls, **common
        )
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
            scheme = "https" if args.tls else "http"
            return f"cannot reach {scheme}://{args.server}: {err}"
        return None
    import grpc

    if isinstance(err, grpc.RpcError):
        return f"{args.server} answered {err.code().name}: {err.details()}"
    return None


def batch_size(args, limits, rows: int, log) -> int:
    """Pairs per request: the flag, cut to the server's limit when its
    `limits` (from the metadata; None if it gives none) say one."""
    if rows <= 1:
        return 1
    limit = (limits or {}).get("max_request_batch_size")
    size = args.batch_size or limit or DEFAULT_BATCH_SIZE
    if limit is not None and size > limit:
        log.info("--batch-size %d is over the server's limit; using %d", size, limit)
        size = limit
    return size


def predict(args, client, premises, hypotheses, gold, lines, log) -> None:
    """Send the pairs in batches; print one line per pair as it comes back.

    Nothing is printed for a request that fails (not even the TSV header)."""
    metadata = client.metadata().get("metadata", {})
    check_signature(args.signature_name, metadata)
    size = batch_size(args, metadata.get(REQUEST_LIMITS_FIELD), len(premises), log)
    out = sys.stdout
    correct = 0
    for start in range(0, len(premises), size):
        stop = start + size
        labels, probs = client.predict(premises[start:stop], hypotheses[start:stop])
        if args.format == "tsv" and start == 0:
            out.write("label\t" + "\t".join(f"p_{name}" for name in LABELS) + "\n")
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


class SignatureMismatch(ValueError):
    """--signature-name names a signature this client cannot call (exit 2)."""


def check_signature(name, metadata):
    """Raises `SignatureMismatch` unless the model's signature `name` takes
    premise/hypothesis strings and gives the outputs the client reads.

    `metadata` is GetModelMetadata's `metadata` (JSON, as the REST API gives
    it); a server that lists no signatures is not checked.
    """
    signatures = metadata.get(SIGNATURE_DEF_FIELD, {}).get(SIGNATURE_DEF_FIELD)
    if not signatures:
        return
    usable = sorted(key for key, sig in signatures.items() if _missing(sig) == ([], []))
    hint = f"; use --signature-name {' or '.join(usable)}" if usable else ""
    if name not in signatures:
        raise SignatureMismatch(
            f"--signature-name {name}: the model has no such signature "
            f"(it has {', '.join(sorted(signatures))}){hint}"
        )
    inputs, outputs = _missing(signatures[name])
    if inputs or outputs:
        lacks = [f"inputs {', '.join(inputs)}"] if inputs else []
        lacks += [f"outputs {', '.join(outputs)}"] if outputs else []
        raise SignatureMismatch(
            f"--signature-name {name}: this signature has no "
            f"{' and no '.join(lacks)}, which the client sends and reads{hint}"
        )


def _missing(signature):
    """(inputs, outputs) the client needs that `signature` lacks."""
    return (
        [x for x in TEXT_INPUTS if x not in signature.get("inputs", {})],
        [x for x in CLIENT_OUTPUTS if x not in signature.get("outputs", {})],
    )


def server_address(value, rest):
    """`(HOST:PORT, tls)` from --server: a missing host or port is TF Serving's
    default for the protocol; with `rest`, `http://` and `https://` (TLS) are
    accepted."""
    protocol = "rest" if rest else "grpc"
    value = DEFAULT_HOST if value is None else value.strip()
    tls = False
    scheme, sep, rest_of = value.partition("://")
    if sep:
        if not rest or scheme.lower() not in ("http", "https"):
            hint = "" if rest else " (add --rest for the REST API)"
            name = "REST" if rest else "gRPC"
            raise ValueError(f"--server {value}: a {name} server is HOST[:PORT]{hint}")
        tls, value = scheme.lower() == "https", rest_of.rstrip("/")
    if value.startswith("[") and value.endswith("]"):  # IPv6, no port
        return f"{value}:{DEFAULT_PORTS[protocol]}", tls
    if "/" in value or not value:
        raise ValueError(
            f"--server {value}: give the server's HOST[:PORT], without a path"
        )
    host, colon, port = value.rpartition(":")
    if not colon:
        return f"{value}:{DEFAULT_PORTS[protocol]}", tls
    if ":" in host and not host.startswith("["):
        raise ValueError(f"--server {value}: write an IPv6 address in brackets, [::1]")
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"--server {value}: the port must be a number in 1-65535")
    return value, tls


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
    if not (0 < args.timeout < float("inf")):
        parser.error(f"--timeout {args.timeout:g}: must be a number of seconds > 0")
    try:
        args.server, args.tls = server_address(args.server, args.rest)
    except ValueError as err:
        parser.error(str(err))
    if args.ssl_ca_cert:
        args.tls = True
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
    except SignatureMismatch as err:
        cli.error(PROG, err)
        return cli.EXIT_BAD_INPUT
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
