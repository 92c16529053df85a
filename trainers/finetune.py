"""Baselines: fine-tune on English, then on the auxiliary languages.

    python -m trainers.finetune --data-dir ../shared/data/xnli --output-dir runs/ft \\
        --preset presets/multilingual_e5_small --aux el,ur [--freeze-bottom 3 | --layer-decay 0.9 | --rates-from RUN]

Stage 1 (English, plain Adam) is shared by all methods of a seed: pass
`--init-from RUN` to reuse another run's. Stage 2 trains on the auxiliary
languages with the baseline's optimizer: plain Adam; Adam with the embeddings
and the bottom K layers frozen (Wu & Dredze, 2019); or layer-wise learning-rate
decay (ELECTRA: layer i of n gets decay^(n + 1 - i), the head 1) — the
`MetaOptimizer` in `fixed` mode with those rates; or the rates of a file
(`--rates-from`, e.g. those `trainers.meta` learned: with its --seed and
--learning-rate this is that run's stage 3 again, bit for bit). Then every
language of `--eval-split` is evaluated. `--aux ''` evaluates the English model alone.
"""

import sys

from keras_metaopt import cli
from trainers.flags import (
    add_baseline_flags,
    add_common_flags,
    finished_results,
    learning_rate_suffix,
    parse_run,
)


def build_parser():
    parser = cli.parser("python -m trainers.finetune", __doc__)
    return add_baseline_flags(add_common_flags(parser))


def method_name(args):
    if args.method_name:
        return args.method_name
    if not [x for x in args.aux.split(",") if x]:
        return "english-only" + learning_rate_suffix(args)
    if args.freeze_bottom:
        name = f"freeze-bottom-{args.freeze_bottom}"
    elif args.layer_decay is not None:
        name = f"layer-decay-{args.layer_decay:g}"
    elif args.rates_from is not None:
        name = "fixed-rates"
    else:
        name = "finetune"
    return name + learning_rate_suffix(args)


def main(argv=None):
    """Runs `trainers.finetune` on `argv` (default: the command line); True
    when every stage finished and was evaluated."""
    args, plan = parse_run(build_parser(), argv, "finetune")
    done = finished_results(plan)
    if done is not None:
        return done
    from trainers.finetune_training import train  # TensorFlow, after the checks

    return train(args, method_name(args), plan)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
