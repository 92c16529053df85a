"""The meta-objective's landscape: held-out loss after H steps at a uniform rate λ.

    python -m probes.horizon --init-from runs/xnli-proxy/english-only-seed0 \\
        --data-dir ../shared/data/xnli --preset presets/multilingual_e5_small \\
        --output-dir runs/probe-horizon --heldout ur --sequence-length 64 \\
        --rates 0.25,0.5,1 --horizons 15,45,150

Algorithm 1 moves φ along the slope of the held-out loss measured L steps
into a round (L = 15, up to `--meta-updates-per-round` × L = 45 at the
xnli-proxy budget). The learned rates are then used for a whole auxiliary
stage (~150 steps). This tool measures, from the English model θ_En, the
held-out loss after H steps of training on the other source languages with
every layer's rate set to the same λ (MetaOptimizer in `fixed` mode, base Adam
as in the trainers, the same batches and dropout for every λ). If short
horizons prefer small λ while long ones prefer large λ, the meta-objective is
short-horizon biased (Wu et al., 2018): greedy meta-steps shrink the rates.

The held-out loss is the mean cross-entropy (inference mode) over the first
`--heldout-examples` pairs of the held-out language's training split (never
the evaluation split). Prints a table and writes `probe.json` to --output-dir.
"""

import json
import logging
import math
import sys

import keras
import numpy as np

from keras_metaopt import LayerGroups, MetaOptimizer, TrainStep, cli
from probes.probe_setup import heldout_loss, load_probe, probe_parser, start_probe

logger = logging.getLogger("keras_metaopt.probes.horizon")


def build_parser():
    parser, g = probe_parser(
        "python -m probes.horizon", __doc__, "Held-out pairs the loss is averaged over."
    )
    g.add_argument("--rates", default="0.25,0.5,1", help="Uniform rates λ to try.")
    g.add_argument("--horizons", default="15,45,150", help="Steps H to measure at.")
    return parser


def main(argv=None):
    run = start_probe(build_parser(), argv, "probe-horizon")
    args = run.args
    rates = [float(x) for x in args.rates.split(",")]
    horizons = sorted(int(x) for x in args.horizons.split(","))
    classifier, train_langs, batches, n = load_probe(run)
    theta_en = [v.numpy() for v in classifier.variables]
    groups = LayerGroups(frozen=run.frozen)
    names = sorted(
        {groups.group_of_path(v.path) for v in classifier.trainable_variables}
        - set(groups.frozen)
    )
    step = math.gcd(*horizons)
    start_loss = heldout_loss(classifier, batches)
    logger.info(
        "held out %s (%d pairs), training on %s; loss at θ_En %.4f",
        args.heldout,
        n,
        ",".join(sorted(train_langs)),
        start_loss,
    )
    table = {}
    for rate in rates:
        for variable, value in zip(classifier.variables, theta_en):
            # θ_En and the dropout seed states (in `variables`): every λ sees
            # the same dropout masks. No `set_random_seed` here: it clears TF's
            # kernel cache, which frees the e5 tokenizer's SentencePiece resource.
            variable.assign(value)
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(args.learning_rate),
            groups,
            mode="fixed",
            initial_rates={g: rate for g in names},
        )
        train = TrainStep(classifier, optimizer, step, run.strategy)
        stream = iter(
            run.dataset(
                train_langs, classifier.preprocessor, args.seed, sampling="uniform"
            )
        )
        done, row = 0, {}
        bar = cli.Progress(f"λ = {rate:g}", horizons[-1])
        while done < horizons[-1]:
            train_loss = float(train(stream))
            done += step
            bar.update(done, [("train_loss", train_loss)])
            if done in horizons:
                row[done] = heldout_loss(classifier, batches)
        table[rate] = row
        logger.info("λ = %g: %s", rate, {h: round(v, 4) for h, v in row.items()})
    text = _format(table, horizons, start_loss, args.heldout)
    print(text)
    (run.dir / "probe.md").write_text(text, encoding="utf-8")
    (run.dir / "probe.json").write_text(
        json.dumps(
            {
                "heldout": args.heldout,
                "train_languages": sorted(train_langs),
                "heldout_examples": n,
                "loss_at_theta_en": start_loss,
                "loss": {
                    str(r): {str(h): v for h, v in row.items()}
                    for r, row in table.items()
                },
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return table


def _format(table, horizons, start_loss, heldout):
    rates = sorted(table)
    lines = [
        f"held-out ({heldout}) loss after H steps at uniform rate λ "
        f"(at θ_En: {start_loss:.4f}); best λ per H marked *",
        "",
        "| H | " + " | ".join(f"λ={r:g}" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for h in horizons:
        values = [table[r][h] for r in rates]
        best = int(np.argmin(values))
        cells = [f"{v:.4f}" + ("*" if i == best else "") for i, v in enumerate(values)]
        lines.append(f"| {h} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
    sys.exit(0)
