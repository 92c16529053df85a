"""Benchmark single-pair serving latency and throughput (prints figures; not a test).

For each model shape: write a random-weight run, export it, then time single-pair
requests (p50/p99 latency, requests/s):

* in-process: the SavedModel's ``serving_default`` called in this process;
* gRPC: ``python -m serving.server`` in a child process, batching off and on,
  each with sequential requests and with ``--clients`` concurrent clients
  (threads here, one channel each).

Usage:
    python -m benchmarks.bench_serving                       # tiny and e5-small shapes
    python -m benchmarks.bench_serving --shapes tiny --requests 300 --json out.json
"""

import argparse
import gc
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.encoder_shapes import E5_SMALL  # noqa: E402
from keras_metaopt import cli  # noqa: E402

log = logging.getLogger("bench_serving")

SHAPES = {
    # name: RandomRunDir keyword arguments
    "tiny": dict(
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        sequence_length=128,
        max_sequence_length=128,
    ),
    # multilingual-e5-small's shape (random weights; a generated WordPiece vocab).
    "e5-small": dict(E5_SMALL, sequence_length=128),
}

# Fastest single-pair setting seen on 2 cores: one thread for the tiny model
# (thread-pool overhead dominates), all cores for e5-small (matmuls dominate).
INTRA_OP_THREADS = {"tiny": 1, "e5-small": 0}

PAIRS = [
    ("A man is playing a guitar on the street.", "A man is playing music."),
    ("Two women are walking outside in the park.", "Nobody is outside."),
    ("Ένας άνδρας παίζει κιθάρα.", "Ο άνδρας δεν παίζει μουσική."),
    ("ایک آدمی گٹار بجا رہا ہے۔", "یہ آدمی موسیقی نہیں بجا رہا ہے۔"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        prog="python -m benchmarks.bench_serving",
        description="Time single-pair NLI requests: in-process SavedModel calls "
        "versus gRPC (python -m serving.server), sequential and concurrent, "
        "with server-side batching off and on.",
    )
    parser.add_argument(
        "--shapes",
        default="tiny,e5-small",
        help=f"comma-separated model shapes from {', '.join(SHAPES)} "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=300,
        help="requests per measurement for the tiny shape (default: %(default)s)",
    )
    parser.add_argument(
        "--large-requests",
        type=int,
        default=64,
        help="requests per measurement for e5-small (default: %(default)s)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="concurrent clients for the concurrent runs (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds per setup; figures pool all rounds "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed requests per client before each round (default: %(default)s)",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        help="TensorFlow intra-op threads, in-process and in the servers "
        "(--tensorflow-intra-op-parallelism); 0 = all cores (default: per shape, "
        + ", ".join(f"{k} {v}" for k, v in INTRA_OP_THREADS.items())
        + "; each shape then runs in its own child process)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="server --max-batch-size when batching is on (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=0,
        help="server --batch-timeout-micros when batching is on (default: %(default)s)",
    )
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        default=1,
        help="server --num-batch-threads when batching is on (default: %(default)s)",
    )
    parser.add_argument(
        "--work-dir",
        help="where runs and exports go (default: a temporary directory, removed "
        "afterwards)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    cli.add_log_level_flag(parser)
    return parser


def summarize(latencies: list[float], wall: float, errors: int) -> dict:
    """p50/p99 latency in ms and requests per second."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "requests": len(latencies),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "rps": round(len(latencies) / wall, 1),
        "errors": errors,
    }


def run_load(call_factory, requests: int, clients: int, warmup: int):
    """Time ``requests`` single-pair calls spread over ``clients`` threads.

    ``call_factory()`` returns a per-client ``(call, close)``; ``call(i)`` sends
    pair ``i``. Returns ``(latencies, wall seconds, error count)``.
    """
    per_client = max(1, requests // clients)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client(worker):
        call, close = call_factory()
        try:
            for i in range(warmup):
                call(i)
            ready.wait()
            mine = []
            for i in range(per_client):
                started = time.perf_counter()
                try:
                    call(worker + i)
                except Exception as err:  # counted and reported, not raised
                    errors.append(repr(err))
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)
        finally:
            close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        log.warning("%d errors, first: %s", len(errors), errors[0])
    return latencies, time.perf_counter() - started, len(errors)


def in_process_factory(version_dir: Path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    loaded = tf.saved_model.load(str(version_dir))
    fn = loaded.signatures["serving_default"]

    def factory():
        def call(i):
            p, h = PAIRS[i % len(PAIRS)]
            out = fn(premise=tf.constant([p]), hypothesis=tf.constant([h]))
            out["probabilities"].numpy()

        return call, lambda: None

    factory.loaded = loaded
    return factory


def grpc_factory(address: str):
    from serving.client.nli_client import NliClient

    def factory():
        client = NliClient(address, timeout=120)

        def call(i):
            p, h = PAIRS[i % len(PAIRS)]
            client.predict([p], [h])

        return call, client.close

    return factory


def status_factory(address: str):
    """GetModelStatus round trips: the gRPC cost with no model work at all."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nli"})

    def factory():
        channel = grpc.insecure_channel(address)
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        return (lambda i: stub.GetModelStatus(request, timeout=60)), channel.close

    return factory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(base: Path, batching: bool, args, logfile: Path):
    """Start ``python -m serving.server``; returns (process, address) once ready."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "serving.server",
        "--model-base-path",
        str(base),
        "--port",
        str(port),
        "--tensorflow-intra-op-parallelism",
        str(args.intra_op_threads),
        "--rest-api-port",
        "0",  # gRPC only here; benchmarks/bench_client.py times the REST API
    ]
    if batching:
        cmd += [
            "--enable-batching",
            "--max-batch-size",
            str(args.max_batch_size),
            "--batch-timeout-micros",
            str(args.batch_timeout_micros),
            "--num-batch-threads",
            str(args.num_batch_threads),
        ]
    log.info("starting %s", " ".join(cmd[1:]))
    stderr = logfile.open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    deadline = time.monotonic() + 900
    while "listening on" not in logfile.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start:\n{logfile.read_text()}")
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port}"


def stop_server(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def prepare(shape: str, work: Path) -> Path:
    """Write a random run of ``shape`` and export it; returns MODEL_BASE."""
    from keras_metaopt.testing import RandomRunDir
    from serving.export.exporter import Exporter

    run, base = work / shape / "run", work / shape / "models"
    started = time.monotonic()
    RandomRunDir(encoder="bert", **SHAPES[shape]).write(run)
    Exporter(run, base / "1").export()
    size = sum(f.stat().st_size for f in (base / "1").rglob("*") if f.is_file())
    log.info(
        "%s: wrote and exported in %.0fs (%.0f MB SavedModel)",
        shape,
        time.monotonic() - started,
        size / 1e6,
    )
    gc.collect()
    return base


def bench_shape(shape: str, work: Path, args) -> dict:
    """Interleave rounds of every setup so that they share the machine's noise."""
    base = prepare(shape, work)
    n = args.requests if shape == "tiny" else args.large_requests
    per_round = max(args.clients, n // args.rounds)
    c = args.clients
    setups = {"in-process sequential": (in_process_factory(base / "1"), 1)}
    setups[f"in-process {c} threads"] = (setups["in-process sequential"][0], c)
    servers = []
    try:
        for batching in (False, True):
            tag = "batching on" if batching else "batching off"
            log_file = work / f"{shape}-{tag.replace(' ', '-')}.log"
            proc, address = start_server(base, batching, args, log_file)
            servers.append(proc)
            setups[f"gRPC {tag}, sequential"] = (grpc_factory(address), 1)
            setups[f"gRPC {tag}, {c} clients"] = (grpc_factory(address), c)
            if not batching:
                name = "gRPC GetModelStatus, sequential (no model work)"
                setups[name] = (status_factory(address), 1)
        raw = {name: ([], 0.0, 0) for name in setups}
        for r in range(args.rounds):
            log.info("%s: round %d of %d", shape, r + 1, args.rounds)
            for name, (factory, clients) in setups.items():
                lat, wall, errors = run_load(factory, per_round, clients, args.warmup)
                old = raw[name]
                raw[name] = (old[0] + lat, old[1] + wall, old[2] + errors)
    finally:
        for proc in servers:
            stop_server(proc)
    return {name: summarize(*value) for name, value in raw.items()}


def report(results: dict, clients: int) -> list[str]:
    lines = [
        "",
        "| setup | requests | p50 ms | p99 ms | req/s | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['requests']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['rps']:.1f} | {r['errors']} |"
        )
    inproc = results["in-process sequential"]["p50_ms"]
    bound = 1.2 * inproc + 1.0
    lines.append("")
    for tag in ("batching off", "batching on"):
        p50 = results[f"gRPC {tag}, sequential"]["p50_ms"]
        verdict = "meets" if p50 <= bound else "misses"
        lines.append(
            f"- gRPC p50 ({tag}) {p50:.2f} ms vs target 1.2 x {inproc:.2f} + 1 = "
            f"{bound:.2f} ms: {verdict} the target"
        )
    seq = results["gRPC batching on, sequential"]["rps"]
    conc = results[f"gRPC batching on, {clients} clients"]["rps"]
    ratio = conc / seq if seq else float("nan")
    verdict = "meets" if ratio >= 3 else "misses"
    lines.append(
        f"- {clients}-client throughput with batching {conc:.1f} req/s = {ratio:.2f} x "
        f"sequential ({seq:.1f} req/s); target 3 x: {verdict} the target"
    )
    return lines


def run_children(shapes: list[str], args) -> dict:
    """Run each shape in a child process with its own TensorFlow thread setting."""
    results = {}
    for shape in shapes:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.bench_serving",
                "--shapes",
                shape,
                "--intra-op-threads",
                str(INTRA_OP_THREADS[shape]),
                "--json",
                out.name,
            ]
            for flag in (
                "requests",
                "large_requests",
                "clients",
                "rounds",
                "warmup",
                "max_batch_size",
                "batch_timeout_micros",
                "num_batch_threads",
                "log_level",
            ):
                cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
            if args.work_dir:
                cmd += ["--work-dir", args.work_dir]
            log.info("running %s in a child process", shape)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
            results.update(json.loads(Path(out.name).read_text())["results"])
    return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(args.log_level)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        print(f"error: unknown shape(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    started = time.monotonic()
    threads = {}
    if args.intra_op_threads is None:
        all_results = run_children(shapes, args)
        threads = {shape: INTRA_OP_THREADS[shape] for shape in shapes}
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_serving_"))
        work.mkdir(parents=True, exist_ok=True)
        all_results = {}
        try:
            for shape in shapes:
                all_results[shape] = bench_shape(shape, work, args)
                threads[shape] = args.intra_op_threads
        finally:
            if not args.work_dir:
                shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"CPU cores: {os.cpu_count()}; load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}; total {time.monotonic() - started:.0f}s; "
        f"{args.rounds} interleaved rounds per setup",
        "",
    ]
    for shape, results in all_results.items():
        lines.append(f"### {shape} (intra-op threads: {threads[shape] or 'all'})")
        lines += report(results, args.clients) + [""]
    print("\n".join(lines))
    if args.json:
        doc = {"results": all_results, "intra_op_threads": threads}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
