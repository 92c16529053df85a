"""Baselines: fine-tune on English, then on the auxiliary languages.

    python -m trainers.finetune --data-dir ../shared/data/xnli --output-dir runs/ft \\
        --preset presets/e5-small --aux el,ur [--freeze-bottom 3 | --layer-decay 0.9]

Stage 1 (English, plain Adam) is shared by all methods of a seed: pass
`--init-from RUN` to reuse another run's. Stage 2 trains on the auxiliary
languages with the baseline's optimizer: plain Adam; Adam with the embeddings
and the bottom K layers frozen (Wu & Dredze, 2019); or layer-wise learning-rate
decay (ELECTRA: layer i of n gets decay^(n + 1 - i), the head 1) — the
`MetaOptimizer` in `fixed` mode with those rates. Then every language of
`--eval-split` is evaluated. `--aux ''` evaluates the English model alone.
"""

import argparse
import sys

import keras

from keras_metaopt import LayerGroups, MetaOptimizer
from keras_metaopt.formats import MODEL_DIR, RATES_JSON
from trainers.flags import (
    add_baseline_flags,
    add_common_flags,
    learning_rate_suffix,
    parse_args,
)
from trainers.process import setup_process
from trainers.run import Run, logger
from trainers.stage_loop import train_stage


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m trainers.finetune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return add_baseline_flags(add_common_flags(parser))


def method_name(args):
    if not [x for x in args.aux.split(",") if x]:
        return "english-only" + learning_rate_suffix(args)
    if args.freeze_bottom:
        name = f"freeze-bottom-{args.freeze_bottom}"
    elif args.layer_decay is not None:
        name = f"layer-decay-{args.layer_decay:g}"
    else:
        name = "finetune"
    return name + learning_rate_suffix(args)


def layer_decay_rates(group_names, decay):
    """ELECTRA's rates: transformer_layer_i of n gets decay^(n + 1 - i), others 1."""
    layers = [g for g in group_names if g.startswith("transformer_layer_")]
    n = len(layers)
    return {
        g: decay ** (n + 1 - int(g.rsplit("_", 1)[1])) if g in layers else 1.0
        for g in group_names
    }


def main(argv=None):
    args = parse_args(build_parser(), argv, trainer="finetune")
    run = Run(args, method_name(args), setup_process(args))
    stage1 = run.english_model()
    final = run.dir / MODEL_DIR
    if not run.aux:  # English only: the English model is the final one
        classifier = run.load_classifier(stage1)
        run.save_model(classifier, final)
    elif (final / "task.json").is_file():
        classifier = run.load_classifier(final)
    else:
        frozen = run.frozen + tuple(
            f"transformer_layer_{i}" for i in range(args.freeze_bottom)
        )
        classifier = run.load_classifier(stage1, frozen=frozen, stage="aux")
        with run.strategy.scope():
            optimizer = keras.optimizers.Adam(args.learning_rate)
            if args.layer_decay is not None:
                groups = LayerGroups(frozen=frozen)
                names, _, _ = groups.assign(classifier.trainable_variables)
                optimizer = MetaOptimizer(
                    optimizer,
                    groups,
                    mode="fixed",
                    initial_rates=layer_decay_rates(names, args.layer_decay),
                )
                optimizer.build(classifier.trainable_variables)
                optimizer.save_rates(run.dir / RATES_JSON)
        pairs = run.aux_pairs()
        steps = run.steps(pairs, args.aux_epochs, args.aux_steps)
        logger.info("stage 2: %s on %s, %d steps", run.method, ",".join(pairs), steps)
        train_stage(run, "aux", classifier, optimizer, pairs, steps)
        run.save_model(classifier, final)
    return run.evaluate(classifier)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
