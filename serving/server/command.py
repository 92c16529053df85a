"""Serve exported models over TF Serving's gRPC and REST APIs (a stand-in for
``tensorflow_model_server`` for local use and tests).

Usage:
    python -m serving.server --model-base-path models/nli --port 8500 \
        --rest-api-port 8501
    python -m serving.server --model-config-file serving/server/models.config \
        --enable-batching --batching-parameters-file serving/server/batching.config
"""

import logging
import os
import signal
import sys
import threading

from keras_metaopt import cli

PROG = "python -m serving.server"


def build_parser():
    parser = cli.parser(
        PROG,
        description=(
            "gRPC server implementing TF Serving's PredictionService (Predict, "
            "Classify, GetModelMetadata) and ModelService (GetModelStatus), plus "
            "TF Serving's REST API (/v1/models/...), for SavedModels in the "
            "MODEL_BASE/<version> layout. Serves the newest version, picks up new "
            "versions without a restart and shuts down within --shutdown-grace-s "
            "on SIGTERM."
        ),
    )
    src = parser.add_argument_group("models")
    src.add_argument(
        "--model-base-path",
        help="directory holding integer version directories (MODEL_BASE)",
    )
    src.add_argument(
        "--model-name",
        default="nli",
        help="name clients use in ModelSpec.name (default: %(default)s)",
    )
    src.add_argument(
        "--model-config-file",
        help="ModelServerConfig text proto (as for tensorflow_model_server), e.g. "
        "serving/server/models.config; replaces --model-base-path/--model-name and adds "
        "version policies and version labels",
    )
    src.add_argument(
        "--file-system-poll-wait-seconds",
        type=float,
        default=1.0,
        help="how often to look for new or removed versions (default: %(default)s)",
    )
    src.add_argument(
        "--max-num-load-retries",
        type=int,
        default=5,
        help="retries for a version that fails to load (default: %(default)s)",
    )
    src.add_argument(
        "--load-retry-interval-seconds",
        type=float,
        default=10.0,
        help="wait between load retries (default: %(default)s)",
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; 0.0.0.0 for all)",
    )
    net.add_argument(
        "--port", type=int, default=8500, help="gRPC port (default: %(default)s)"
    )
    net.add_argument(
        "--rest-api-port",
        type=int,
        default=8501,
        help="port of the REST API (POST /v1/models/NAME:predict, ...); 0 turns "
        "it off (default: %(default)s, the port of TF Serving's Docker image)",
    )
    net.add_argument(
        "--ssl-cert", help="PEM server certificate; enables TLS (gRPC and HTTPS)"
    )
    net.add_argument("--ssl-key", help="PEM private key for --ssl-cert")
    net.add_argument(
        "--grpc-max-threads",
        type=int,
        default=32,
        help="threads answering RPCs (default: %(default)s)",
    )
    net.add_argument(
        "--max-message-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest request/response message (default: %(default)s)",
    )
    net.add_argument(
        "--shutdown-grace-s",
        "--grace-seconds",
        dest="shutdown_grace_s",
        type=float,
        default=20.0,
        help="on SIGTERM/SIGINT, new requests get UNAVAILABLE at once and "
        "in-flight ones get this long to finish; the process exits by then even "
        "if model calls are still running (default: %(default)s; below the 30 s "
        "a Kubernetes pod gets before SIGKILL)",
    )
    tfg = parser.add_argument_group("tensorflow")
    tfg.add_argument(
        "--tensorflow-intra-op-parallelism",
        type=int,
        default=0,
        help="threads one op (e.g. a matmul) may use; 0 = TensorFlow's choice "
        "(all cores). 1 is fastest for small models on few cores "
        "(default: %(default)s)",
    )
    tfg.add_argument(
        "--tensorflow-inter-op-parallelism",
        type=int,
        default=0,
        help="ops run in parallel within one call; 0 = TensorFlow's choice "
        "(default: %(default)s)",
    )
    tfg.add_argument(
        "--xla-cpu-compilation-enabled",
        action="store_true",
        help="allow models with XLA functions (serving.export --jit-compile); "
        "off by default, as in tensorflow_model_server, and such a model then "
        "fails to load with a message saying so",
    )
    lim = parser.add_argument_group("request limits")
    lim.add_argument(
        "--max-request-batch-size",
        type=int,
        default=256,
        help="largest batch one request may carry (default: %(default)s)",
    )
    lim.add_argument(
        "--max-string-bytes",
        type=int,
        default=10_000,
        help="longest premise/hypothesis in bytes (default: %(default)s)",
    )
    bat = parser.add_argument_group("batching")
    bat.add_argument(
        "--enable-batching",
        action="store_true",
        help="merge concurrent requests into one model call",
    )
    bat.add_argument(
        "--batching-parameters-file",
        help="BatchingParameters text proto, e.g. serving/server/batching.config; the flags "
        "below override its values",
    )
    bat.add_argument(
        "--max-batch-size", type=int, help="rows per merged batch (default: 32)"
    )
    bat.add_argument(
        "--batch-timeout-micros",
        type=int,
        help="how long a batch waits to fill up; 0 = take only what is already "
        "queued (default: 0)",
    )
    bat.add_argument(
        "--num-batch-threads",
        type=int,
        help="threads running merged batches (default: 2)",
    )
    bat.add_argument(
        "--max-enqueued-batches",
        type=int,
        help="queue limit, in batches, before UNAVAILABLE (default: 100)",
    )
    cli.add_log_level_flag(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model_base_path and not args.model_config_file:
        parser.error("give --model-base-path or --model-config-file")
    if (args.ssl_cert is None) != (args.ssl_key is None):
        parser.error("--ssl-cert and --ssl-key go together")
    if args.shutdown_grace_s < 0:
        parser.error("--shutdown-grace-s must be >= 0")
    if args.rest_api_port and args.rest_api_port == args.port:
        parser.error("--rest-api-port must differ from --port (0 turns REST off)")
    cli.configure_logging(args.log_level)
    tf = cli.import_tensorflow()

    # Must happen before TensorFlow runs its first op.
    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(
            args.tensorflow_intra_op_parallelism
        )
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(
            args.tensorflow_inter_op_parallelism
        )
    from serving.server.batching_config import BatchingConfig
    from serving.server.model_manager import ModelManager
    from serving.server.model_server import ModelServer

    log = logging.getLogger("serving.server")
    try:
        if args.batching_parameters_file:
            batching = BatchingConfig.from_file(args.batching_parameters_file)
        else:
            batching = BatchingConfig()
        batching.enabled = args.enable_batching
        for field in (
            "max_batch_size",
            "batch_timeout_micros",
            "num_batch_threads",
            "max_enqueued_batches",
        ):
            if getattr(args, field) is not None:
                setattr(batching, field, getattr(args, field))
        batching.validate()
        settings = dict(
            batching=batching,
            poll_seconds=args.file_system_poll_wait_seconds,
            max_request_batch_size=args.max_request_batch_size,
            max_string_bytes=args.max_string_bytes,
            max_load_retries=args.max_num_load_retries,
            retry_seconds=args.load_retry_interval_seconds,
            xla_cpu_compilation_enabled=args.xla_cpu_compilation_enabled,
        )
        if args.model_config_file:
            manager = ModelManager.from_config_file(args.model_config_file, **settings)
        else:
            manager = ModelManager.for_model(
                args.model_name, args.model_base_path, **settings
            )
        server = ModelServer(
            manager,
            host=args.host,
            port=args.port,
            max_threads=args.grpc_max_threads,
            ssl_cert=args.ssl_cert,
            ssl_key=args.ssl_key,
            max_message_bytes=args.max_message_bytes,
            rest_port=args.rest_api_port or None,
        )
        if batching.enabled:
            log.info("batching on: %s", batching)
        server.start()
    except (ValueError, FileNotFoundError) as err:  # the flags or files given
        cli.error(PROG, err)
        return cli.EXIT_BAD_INPUT
    except OSError as err:  # e.g. a port in use
        cli.error(PROG, err)
        return cli.EXIT_ERROR
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(grace=args.shutdown_grace_s)
    return 0


def run(argv=None) -> None:
    """``main``, then exit at once: threads still computing a cancelled
    request (past the grace period) must not hold the process up."""
    code = main(argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
