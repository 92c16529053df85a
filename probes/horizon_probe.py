"""The work of `python -m probes.horizon` (TensorFlow), after its command line
is parsed and checked (`probes.horizon`, whose docstring says what it measures)."""

import json
import logging
import math

import keras
import numpy as np

from keras_metaopt import LayerGroups, MetaOptimizer, TrainStep, cli
from keras_metaopt.formats import PROBE_JSON, PROBE_MD
from probes.probe_setup import heldout_loss, load_probe, open_probe

logger = logging.getLogger("keras_metaopt.probes.horizon")


def run_horizon(args):
    run = open_probe(args, "probe-horizon")
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
    (run.dir / PROBE_MD).write_text(text, encoding="utf-8")
    (run.dir / PROBE_JSON).write_text(
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
