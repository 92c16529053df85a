"""Serving in bfloat16: how far a `--precision mixed_bfloat16` export is from
the float32 one on real pairs (prints figures).

Exports a trained run twice, as `serving.export` does by default and with
`--precision mixed_bfloat16`, runs every pair of `--split` (default: the
xnli-proxy evaluation rows, dev[1245:], of every language) through each
SavedModel's `serving_default` in batches, and prints per language: how often
the two labels agree, the largest and mean absolute difference of the
probabilities, and each export's accuracy. Latency is measured beside the
Hugging Face pipeline by `benchmarks.bench_hf_latency`.

Usage:
    python -m benchmarks.bench_bf16_serving --run-dir RUN \\
        --data-dir ../shared/data/xnli --json bf16-serving.json
"""

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from keras_metaopt import cli

PROG = "python -m benchmarks.bench_bf16_serving"
PRECISIONS = ("float32", "mixed_bfloat16")
log = logging.getLogger("bench_bf16_serving")


def build_parser():
    parser = cli.parser(PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a trained run directory")
    parser.add_argument("--data-dir", required=True, help="XNLI TSV directory")
    parser.add_argument("--split", default="dev[1245:]", help="rows of each language")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work-dir", help="for the exports (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    cli.add_log_level_flag(parser)
    return parser


def agreement(probs, gold):
    """Figures of the two exports' probabilities ``probs[precision]`` (rows x 3)
    on the pairs whose labels are ``gold``."""
    import numpy as np

    a, b = probs["float32"], probs["mixed_bfloat16"]
    diff = np.abs(a - b).max(axis=1)
    return {
        "pairs": int(len(gold)),
        "label_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "accuracy": {p: float(np.mean(probs[p].argmax(1) == gold)) for p in probs},
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(args.log_level)
    if args.batch_size < 1:
        cli.error(PROG, f"--batch-size {args.batch_size}: must be >= 1")
        return cli.EXIT_BAD_INPUT
    cli.import_tensorflow()
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from keras_metaopt.data import list_languages, load_pairs
    from serving.export.exporter import Exporter

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-bf16-"))
    try:
        serve = {}
        for precision in PRECISIONS:
            out = work / precision / "1"
            if not out.exists():
                started = time.monotonic()
                exporter = Exporter(args.run_dir, out, precision=precision)
                exporter.export()
                log.info(
                    "exported %s in %.0f s: %s",
                    precision,
                    time.monotonic() - started,
                    exporter.report,
                )
            serve[precision] = tf.saved_model.load(str(out)).signatures[
                "serving_default"
            ]
        figures, everything = {}, {p: [] for p in PRECISIONS}
        gold_all = []
        seconds = dict.fromkeys(PRECISIONS, 0.0)
        for lang in list_languages(args.data_dir, args.split):
            pairs = load_pairs(args.data_dir, args.split, lang)
            probs = {p: [] for p in PRECISIONS}
            for i in range(0, len(pairs.premises), args.batch_size):
                batch = {
                    "premise": tf.constant(pairs.premises[i : i + args.batch_size]),
                    "hypothesis": tf.constant(
                        pairs.hypotheses[i : i + args.batch_size]
                    ),
                }
                for precision, fn in serve.items():  # interleaved: same load
                    started = time.perf_counter()
                    probs[precision].append(fn(**batch)["probabilities"].numpy())
                    seconds[precision] += time.perf_counter() - started
            probs = {p: np.concatenate(v) for p, v in probs.items()}
            gold = np.asarray(pairs.labels)
            figures[lang] = agreement(probs, gold)
            log.info("%s: %s", lang, figures[lang])
            for p in PRECISIONS:
                everything[p].append(probs[p])
            gold_all.append(gold)
        everything = {p: np.concatenate(v) for p, v in everything.items()}
        figures["all"] = agreement(everything, np.concatenate(gold_all))
        figures["all"]["seconds"] = {p: round(s, 1) for p, s in seconds.items()}
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"run {args.run_dir}, split {args.split}, batches of {args.batch_size}")
    print(
        "| language | pairs | labels agree | max abs diff | mean abs diff "
        "| accuracy float32 | accuracy bf16 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lang, f in figures.items():
        print(
            f"| {lang} | {f['pairs']} | {100 * f['label_agreement']:.2f} % | "
            f"{f['max_abs_diff']:.4f} | {f['mean_abs_diff']:.5f} | "
            f"{100 * f['accuracy']['float32']:.2f} | "
            f"{100 * f['accuracy']['mixed_bfloat16']:.2f} |"
        )
    s = figures["all"]["seconds"]
    print(
        f"time in serving_default (interleaved batches): float32 "
        f"{s['float32']} s, mixed_bfloat16 {s['mixed_bfloat16']} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
