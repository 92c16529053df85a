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
each method's seeds; Koehn 2004, Berg-Kirkpatrick et al. 2012). It holds the
trained models fixed, so it says that two sets of models differ, not that
their methods do: a run's own training noise (its batches and dropout masks)
is not in it, and on xnli-proxy that noise alone moved one run's target
average by up to 2.1 points. Compare methods over several seeds.
"""

import json
import pathlib
import sys

from keras_metaopt import cli
from trainers.flags import PRECISIONS


def build_parser():
    parser = cli.parser("python -m trainers.evaluate", __doc__)
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
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy --model computes in (weights stay as saved).",
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
    parser.add_argument(
        "--pool-mixed-settings",
        action="store_true",
        help="Average the runs of a method as its seeds even when their "
        "settings differ (by default refused, naming the flags that differ).",
    )
    cli.add_log_level_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.configure_logging(args.log_level)
    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
    cli.import_tensorflow()
    # TensorFlow and the data, after the flags (`--help` answers without them).
    import numpy as np

    from keras_metaopt.models import load_classifier
    from trainers.evaluation import evaluate
    from trainers.output_checks import check_output_file
    from trainers.reporting import (
        compare,
        load_results,
        pooling_problems,
        results_table,
    )

    if args.model:
        pairs = check_model_args(parser, args)
        classifier = load_classifier(args.model, dtype=args.precision)
        results = evaluate(classifier, pairs, args.batch_size)
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
    problems = (
        []
        if args.bootstrap_samples >= 1
        else [f"--bootstrap-samples {args.bootstrap_samples}: must be >= 1"]
    )
    runs, run_dirs = [], []
    for run_dir in args.runs:
        try:
            runs += load_results([run_dir])
            run_dirs.append(run_dir)
        except (OSError, ValueError) as err:
            problems.append(" ".join(str(err).split()))
    if not args.pool_mixed_settings:
        mixed = pooling_problems(runs, run_dirs)
        problems += mixed
        if mixed:
            problems.append(
                "compare such runs under different method names, or add "
                "--pool-mixed-settings to average them anyway"
            )
    if args.output:
        problems += check_output_file(args.output, "--output")
    if problems:
        cli.fail(parser.prog, problems)
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


def check_model_args(parser, args):
    """Checks --model's inputs; returns `{lang: pairs}` or fails (exit 2)."""
    import keras_metaopt.models  # noqa: F401  (registers E5Tokenizer for presets)
    from keras_metaopt import data
    from trainers.data_checks import check_data_dir, load_checked
    from trainers.output_checks import check_output_file
    from trainers.preset_checks import check_preset

    if not args.data_dir:
        parser.error("--model needs --data-dir")
    problem, _ = check_preset("--model", args.model, need_task=True)
    problems = [problem] if problem else []
    if args.batch_size < 1:
        problems.append(f"--batch-size {args.batch_size}: must be >= 1")
    if args.output:
        problems += check_output_file(args.output, "--output")
    data_problems = check_data_dir(args.data_dir)
    pairs = {}
    if not data_problems:
        try:
            data.SplitSpec.parse(args.split)
            languages = (
                [x for x in args.languages.split(",") if x]
                if args.languages
                else data.list_languages(args.data_dir, args.split)
            )
        except (OSError, ValueError) as err:
            languages = []
            data_problems.append(f"--split {args.split}: {' '.join(str(err).split())}")
        grouped = {}
        for lang in languages:
            found, problem = load_checked(args.data_dir, args.split, lang, "--split")
            if problem:
                grouped.setdefault(problem, []).append(lang)
            else:
                pairs[lang] = found
        data_problems += [p.format(langs=",".join(x)) for p, x in grouped.items()]
        if not languages and not data_problems:
            data_problems.append(f"--split {args.split}: no language has this split")
    problems += data_problems
    if problems:
        cli.fail(parser.prog, problems)
    return pairs


if __name__ == "__main__":
    sys.exit(main())
