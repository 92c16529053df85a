"""Benchmark one call of ``python -m serving.client`` against a warm server.

Prints the median wall time of whole client processes (start, imports, one
request, exit) for each mode, beside ``python -c "import tensorflow"`` (what
every call cost when the client imported TensorFlow). Not a test.

Usage:
    python -m benchmarks.bench_client --runs 7
"""

import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.bench_serving import free_port, prepare  # noqa: E402
from keras_metaopt import cli  # noqa: E402

log = logging.getLogger("bench_client")


def timed(command: list[str], runs: int, env=None, expect_code=0) -> dict:
    """Median and range of the wall time of ``command`` (must exit
    ``expect_code``), and how many lines its last run wrote on stderr."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, env=env
        )
        times.append(time.perf_counter() - started)
        if done.returncode != expect_code:
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}, not {expect_code}:"
                f"\n{done.stderr}"
            )
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "stderr_lines": len(done.stderr.splitlines()),
    }


def main(argv=None) -> int:
    parser = cli.parser(
        prog="python -m benchmarks.bench_client", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=7, help="processes per mode")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-client-"))
    proc = None
    try:
        base = prepare("tiny", work)
        port, rest_port = free_port(), free_port()
        logfile = work / "server.log"
        with logfile.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serving.server", "--model-base-path",
                 str(base), "--port", str(port), "--rest-api-port", str(rest_port)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        while "REST API on" not in logfile.read_text():
            if proc.poll() is not None:
                raise RuntimeError(logfile.read_text())
            time.sleep(0.2)
        client = [sys.executable, "-m", "serving.client"]
        pair = ["--premise", "A man plays a guitar.", "--hypothesis", "A man plays."]
        grpc_server = ["--server", f"127.0.0.1:{port}"]
        rest_server = ["--rest", "--server", f"127.0.0.1:{rest_port}"]
        modes = {
            "python -c 'import tensorflow' (the old client's floor)": [
                sys.executable, "-c", "import tensorflow"
            ],
            "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
            "client, gRPC, one pair": client + grpc_server + pair,
            "client, REST, one pair": client + rest_server + pair,
            "client status, gRPC": client + ["status"] + grpc_server,
            "client metadata, REST": client + ["metadata"] + rest_server,
        }  # fmt: skip
        for command in modes.values():  # warm the server and the file cache
            subprocess.run(command, cwd=REPO, capture_output=True)
        results = {name: timed(command, args.runs) for name, command in modes.items()}
        for name, figures in results.items():
            print(
                f"{name}: median {figures['median_s']:.3f} s "
                f"(min {figures['min_s']:.3f}, max {figures['max_s']:.3f})"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
