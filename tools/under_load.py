"""Runs a command while every CPU core is kept busy by a background load.

For checking that the test suite does not depend on a quiet machine:

    python -m tools.under_load -- python -m pytest -rs tests

One burner process per core (`--workers`, default `os.cpu_count()`) alternates
float32 matrix products (floating-point units, caches) with a pure-Python loop
(the scheduler), at the same priority as the command. The load is bounded: every
burner stops by itself after `--max-seconds` or as soon as this script is gone,
and is stopped when the command ends. The command's exit status is returned.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _burn(deadline: float, parent: int) -> None:
    import numpy as np

    a = np.random.default_rng(os.getpid()).random((256, 256), dtype=np.float32)
    while time.monotonic() < deadline and os.getppid() == parent:
        for _ in range(20):
            a = a @ a
            a /= np.abs(a).max() + 1.0
        total = 0
        for i in range(200_000):
            total += i * i


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="Burner processes."
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=3 * 3600,
        help="Each burner stops by itself after this long.",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.workers < 1 or args.max_seconds <= 0:
        parser.error("--workers and --max-seconds must be positive")
    deadline = time.monotonic() + args.max_seconds
    context = multiprocessing.get_context("fork")
    burners = [
        context.Process(target=_burn, args=(deadline, os.getpid()), daemon=True)
        for _ in range(args.workers)
    ]
    for burner in burners:
        burner.start()
    print(
        f"under_load: {args.workers} burner(s) for at most {args.max_seconds:.0f} s",
        file=sys.stderr,
    )
    started = time.monotonic()
    try:
        code = subprocess.call(command)
    finally:
        for burner in burners:
            burner.terminate()
        for burner in burners:
            burner.join()
    print(
        f"under_load: {' '.join(command)} exited {code} "
        f"after {time.monotonic() - started:.0f} s under load",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
