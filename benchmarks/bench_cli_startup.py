"""Benchmark how fast each command line answers `--help` and a bad flag.

Times whole processes (start, imports, parse, exit) as a user runs them,
without TF_CPP_MIN_LOG_LEVEL of our own, and reports the median wall time,
the number of stderr lines of the bad-flag call, and whether `--help` printed
anything on stderr. `python -c "import tensorflow"` is the reference: what
every `--help` cost when the commands imported TensorFlow first. Not a test.

Usage:
    python -m benchmarks.bench_cli_startup --runs 5
"""

import os
import sys

from benchmarks.bench_client import timed
from keras_metaopt import cli

# Each command, and a flag value its parser refuses (argparse, before any work).
COMMANDS = {
    "trainers.meta": ["--output-dir", "x", "--data-dir", "x", "--seed", "one"],
    "trainers.finetune": ["--output-dir", "x", "--data-dir", "x", "--seed", "one"],
    "trainers.evaluate": ["--batch-size", "many"],
    "serving.export": ["--run-dir", "x", "--out", "y", "--atol", "tiny"],
    "serving.server": ["--port", "http"],
    "serving.client": ["--timeout", "soon"],
    "tools.make_tiny_preset": ["--data-dir", "x", "--out", "y", "--seed", "one"],
    "benchmarks.xnli_proxy": ["--seeds-main", "three"],
    "probes.horizon": ["--output-dir", "x", "--data-dir", "x", "--seed", "one"],
    "probes.metagrad": ["--output-dir", "x", "--data-dir", "x", "--meta-interval", "L"],
}


def _env():
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def main(argv=None) -> int:
    parser = cli.parser("python -m benchmarks.bench_cli_startup", __doc__)
    parser.add_argument("--runs", type=int, default=5, help="Processes per command.")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: must be >= 1")
    python = [sys.executable]
    reference = timed([*python, "-c", "import tensorflow"], args.runs, env=_env())
    print("| command | `--help` median s (min–max) | `--help` stderr lines "
          "| bad flag: median s | bad flag: stderr lines |")  # fmt: skip
    print("|---|---|---|---|---|")
    for module, bad in COMMANDS.items():
        helped = timed([*python, "-m", module, "--help"], args.runs, env=_env())
        refused = timed(
            [*python, "-m", module, *bad], args.runs, env=_env(), expect_code=2
        )
        print(
            f"| `{module}` | {helped['median_s']:.2f} ({helped['min_s']:.2f}–"
            f"{helped['max_s']:.2f}) | {helped['stderr_lines']} "
            f"| {refused['median_s']:.2f} | {refused['stderr_lines']} |"
        )
    print(
        f"\nreference: python -c 'import tensorflow': {reference['median_s']:.2f} s "
        f"median ({reference['stderr_lines']} stderr lines)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
