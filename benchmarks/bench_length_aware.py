"""Benchmark length-aware serving on real XNLI pairs (prints figures; not a test).

Builds a classifier from an encoder preset (random classification head), exports
it twice: "before" with ``serving_default`` running the encoder on pairs padded
to ``--sequence-length`` (the export code before length-aware inference), and
"after" with the current export (each batch cut to its longest pair). Then, on
XNLI dev pairs of every language (real lengths), interleaving the two:

* the largest difference between the two exports' probabilities;
* in-process single-pair latency (the SavedModel's serving_default);
* gRPC throughput with ``--clients`` concurrent single-pair clients against
  ``python -m serving.server --enable-batching``.

Usage:
    python -m benchmarks.bench_length_aware --preset presets/multilingual_e5_small \
        --data-dir ../shared/data/xnli
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.bench_serving import run_load, start_server, stop_server, summarize  # noqa: E402
from keras_metaopt import cli  # noqa: E402

log = logging.getLogger("bench_length_aware")
LANGUAGES = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        prog="python -m benchmarks.bench_length_aware",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--preset", required=True, help="encoder preset directory")
    parser.add_argument("--data-dir", required=True, help="XNLI TSV directory")
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=128,
        help="the preprocessor's packed length (default: %(default)s)",
    )
    parser.add_argument(
        "--pairs-per-language",
        type=int,
        default=8,
        help="dev pairs taken from each of the 15 languages (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=64,
        help="requests per measurement and round (default: %(default)s)",
    )
    parser.add_argument("--clients", type=int, default=8, help="(default: 8)")
    parser.add_argument("--rounds", type=int, default=2, help="(default: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="(default: 2)")
    parser.add_argument("--work-dir", help="default: a temporary directory")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    cli.add_log_level_flag(parser)
    return parser


def load_pairs(data_dir: Path, per_language: int) -> list[tuple[str, str]]:
    from keras_metaopt.data import load_pairs as load

    pairs = []
    for lang in LANGUAGES:
        data = load(str(data_dir), f"dev[:{per_language}]", lang)
        pairs += list(zip(data.premises, data.hypotheses, strict=True))
    return pairs


def write_run(preset: str, sequence_length: int, path: Path) -> Path:
    from keras_metaopt.formats import LABEL_NAMES as LABELS
    from keras_metaopt.formats import MODEL_DIR
    from keras_metaopt.models import load_classifier
    from keras_metaopt.run_record import make_run_record, write_run_record

    classifier = load_classifier(preset, num_classes=len(LABELS), activation=None)
    classifier.preprocessor.sequence_length = sequence_length
    classifier.save_to_preset(str(path / MODEL_DIR))
    run = make_run_record(
        method="baseline",
        preset=str(preset),
        aux=[],
        sequence_length=sequence_length,
        seed=0,
    )
    write_run_record(path, run)
    return path


def export(run: Path, out: Path, length_aware: bool) -> None:
    from serving.export import serving_module
    from serving.export.exporter import Exporter

    original = serving_module.ServingModule._serve_text
    if not length_aware:  # the export code before length-aware inference

        def padded(self, premise, hypothesis):
            return self._outputs(self.tokenize(premise, hypothesis))

        serving_module.ServingModule._serve_text = padded
    try:
        Exporter(run, out).export()
    finally:
        serving_module.ServingModule._serve_text = original


def in_process_factory(fn, pairs):
    import tensorflow as tf

    def factory():
        def call(i):
            p, h = pairs[i % len(pairs)]
            fn(premise=tf.constant([p]), hypothesis=tf.constant([h]))[
                "probabilities"
            ].numpy()

        return call, lambda: None

    return factory


def grpc_factory(address, pairs):
    from serving.client.nli_client import NliClient

    def factory():
        client = NliClient(address, timeout=600)

        def call(i):
            p, h = pairs[i % len(pairs)]
            client.predict([p], [h])

        return call, client.close

    return factory


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(args.log_level)
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-length-"))
    servers = []
    try:
        pairs = load_pairs(Path(args.data_dir), args.pairs_per_language)
        run = write_run(args.preset, args.sequence_length, work / "run")
        bases = {}
        for name, aware in (("before", False), ("after", True)):
            bases[name] = work / name
            started = time.monotonic()
            export(run, bases[name] / "1", aware)
            log.info("exported %s in %.0fs", name, time.monotonic() - started)
        loaded = {n: tf.saved_model.load(str(b / "1")) for n, b in bases.items()}
        fns = {n: m.signatures["serving_default"] for n, m in loaded.items()}

        # Outputs of the two exports on every pair, in batches of 8.
        diff, lengths = 0.0, []
        for start in range(0, len(pairs), 8):
            p = tf.constant([x for x, _ in pairs[start : start + 8]])
            h = tf.constant([y for _, y in pairs[start : start + 8]])
            out = {
                n: fn(premise=p, hypothesis=h)["probabilities"].numpy()
                for n, fn in fns.items()
            }
            diff = max(diff, float(np.abs(out["before"] - out["after"]).max()))
            mask = loaded["after"].tokenize(p, h)["padding_mask"].numpy()
            lengths += mask.sum(axis=1).tolist()
        log.info("max |before - after| = %.3g over %d pairs", diff, len(pairs))

        setups = {}
        for name in ("before", "after"):
            setups[f"{name}: in-process, sequential"] = (
                in_process_factory(fns[name], pairs),
                1,
            )
        for name in ("before", "after"):
            logfile = work / f"server-{name}.log"
            bench_args = argparse.Namespace(
                intra_op_threads=0,
                max_batch_size=32,
                batch_timeout_micros=0,
                num_batch_threads=1,
            )
            proc, address = start_server(bases[name], True, bench_args, logfile)
            servers.append(proc)
            setups[f"{name}: gRPC batching on, sequential"] = (
                grpc_factory(address, pairs),
                1,
            )
            setups[f"{name}: gRPC batching on, {args.clients} clients"] = (
                grpc_factory(address, pairs),
                args.clients,
            )
        raw = {name: ([], 0.0, 0) for name in setups}
        for r in range(args.rounds):
            for name, (factory, clients) in setups.items():
                log.info("round %d: %s", r + 1, name)
                lat, wall, errors = run_load(
                    factory, args.requests, clients, args.warmup
                )
                old = raw[name]
                raw[name] = (old[0] + lat, old[1] + wall, old[2] + errors)
        results = {name: summarize(*value) for name, value in raw.items()}
    finally:
        for proc in servers:
            stop_server(proc)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{len(pairs)} XNLI dev pairs ({args.pairs_per_language} per language); "
        f"tokens per pair: mean {statistics.mean(lengths):.1f}, max {max(lengths)}, "
        f"packed length {args.sequence_length}"
    )
    print(f"max |p_before - p_after| = {diff:.3g}")
    print("| setup | requests | p50 ms | p99 ms | req/s | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(
            f"| {name} | {r['requests']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['rps']:.1f} | {r['errors']} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"max_diff": diff, "lengths": lengths, "results": results}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
