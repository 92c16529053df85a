"""Accuracy per language, Table-1-style tables, and paired bootstrap tests.

Evaluate a saved classifier on any split:

    python -m trainers.evaluate --model runs/meta/model --data-dir ../shared/data/xnli \\
        --split 'dev[1245:]' --output results.json

Compare finished runs (their results.json; several seeds per method):

    python -m trainers.evaluate runs/*/ --baseline finetune --output table.md

The table gives mean ± std over seeds per language, the average over the
target languages (all but English and the auxiliaries) and over all, and a
two-sided paired bootstrap p-value of each method against the baseline,
resampling target-language examples (per-example correctness averaged over
each method's seeds; Koehn 2004, Berg-Kirkpatrick et al. 2012).
"""

import argparse
import json
import logging
import pathlib
import sys

import keras_hub
import numpy as np

from keras_metaopt import data
from trainers.common import evaluate, results_table


def paired_bootstrap(correct_a, correct_b, samples=10_000, seed=0):
    """Two-sided p-value that methods a and b differ in mean accuracy.

    `correct_a`, `correct_b`: per-example scores (0/1 or seed means) on the
    same examples. Returns `(delta, p)` with delta = mean(a) - mean(b).
    """
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(
            f"paired bootstrap needs two equal-length vectors; got {a.shape}, {b.shape}"
        )
    diff = a - b
    delta = float(diff.mean())
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(diff), size=(samples, len(diff)))
    resampled = diff[index].mean(axis=1)
    p = float(np.mean(np.abs(resampled - delta) >= abs(delta))) if delta else 1.0
    return delta, p


def load_results(run_dirs):
    runs = []
    for run_dir in run_dirs:
        path = pathlib.Path(run_dir) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results (is the run finished?)")
        runs.append(json.loads(path.read_text(encoding="utf-8")))
    return runs


def compare(runs, baseline, samples=10_000, seed=0):
    """`{method: (delta, p)}` of each method against `baseline` on target languages.

    Seeds are paired: a method is compared with the baseline's runs of the
    seeds it has (same English model), or with all of them if none match.
    Per-example correctness is averaged over those seeds before resampling.
    """
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    if baseline not in by_method:
        raise ValueError(
            f"no run of the baseline '{baseline}'; methods: {sorted(by_method)}"
        )
    targets = by_method[baseline][0]["targets"]

    def scores(group):
        return np.mean(
            [np.concatenate([r["correct"][x] for x in targets]) for r in group], axis=0
        )

    def base(group):
        seeds = {r["seed"] for r in group}
        paired = [r for r in by_method[baseline] if r["seed"] in seeds]
        return scores(paired or by_method[baseline])

    return {
        method: paired_bootstrap(scores(group), base(group), samples, seed)
        for method, group in by_method.items()
        if method != baseline
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m trainers.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs", nargs="*", help="Run directories with results.json to compare."
    )
    parser.add_argument(
        "--model", help="A saved classifier preset to evaluate (e.g. RUN/model)."
    )
    parser.add_argument(
        "--data-dir", help="Data for --model (TSV or official XNLI directory)."
    )
    parser.add_argument("--split", default="dev[1245:]", help="Split for --model.")
    parser.add_argument(
        "--languages", help="Comma-separated languages for --model; default all."
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="Evaluation batch size."
    )
    parser.add_argument(
        "--baseline", default="finetune", help="Method the others are tested against."
    )
    parser.add_argument(
        "--bootstrap-samples", type=int, default=10_000, help="Bootstrap resamples."
    )
    parser.add_argument(
        "--output", help="Write the table (.md) or the results (.json) here."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )

    if args.model:
        if not args.data_dir:
            parser.error("--model needs --data-dir")
        classifier = keras_hub.models.TextClassifier.from_preset(args.model)
        languages = (
            args.languages.split(",")
            if args.languages
            else data.list_languages(args.data_dir, args.split)
        )
        results = evaluate(
            classifier,
            {x: data.load_pairs(args.data_dir, args.split, x) for x in languages},
            args.batch_size,
        )
        accuracy = {x: r["accuracy"] for x, r in results.items()}
        payload = {
            "method": pathlib.Path(args.model).name,
            "accuracy": accuracy,
            "avg_target": float(np.mean(list(accuracy.values()))),
            "avg_all": float(np.mean(list(accuracy.values()))),
        }
        print(results_table([payload]))
        if args.output:
            pathlib.Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
        return 0

    if not args.runs:
        parser.error("give run directories to compare, or --model to evaluate")
    runs = load_results(args.runs)
    methods = {r["method"] for r in runs}
    p_values = None
    if args.baseline in methods and len(methods) > 1:
        tests = compare(runs, args.baseline, args.bootstrap_samples)
        p_values = {m: p for m, (_, p) in tests.items()}
    table = results_table(runs, args.baseline, p_values)
    print(table)
    if args.output:
        pathlib.Path(args.output).write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
