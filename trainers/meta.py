"""The paper's protocol: soft layer selection with meta-learning (Xu et al., 2021).

    python -m trainers.meta --aux el,ur --data-dir ../shared/data/xnli \\
        --preset presets/multilingual_e5_small --output-dir runs/meta

1. Fine-tune on English (or `--init-from` a stage-1 model shared by methods).
2. Meta-train φ by Algorithm 1 (`trainers.meta_training.meta_train`, next to
   the paper's pseudo-code).
3. Fine-tune the English model on the auxiliary languages with the learned
   rates λ(φ) (MetaOptimizer in `fixed` mode).
4. Evaluate every language of `--eval-split`.
Ablations: `--rates shared` (one rate for all layers), `--meta joint` (φ from
the training loss, no held-out language); `--meta-init english` starts each
round from the English model instead of the pretrained encoder with a fresh
head (the paper's); `--rounds 0` learns nothing and runs stage 3 with the
initial rates λ(φ0), the same φ0 as a run of the same seed that learns φ. A
killed run resumes where it stopped.
"""

import sys

from keras_metaopt import cli
from trainers.flags import (
    add_common_flags,
    add_meta_flags,
    finished_results,
    learning_rate_suffix,
    parse_run,
)


def build_parser():
    parser = cli.parser("python -m trainers.meta", __doc__)
    return add_meta_flags(add_common_flags(parser))


def method_name(args):
    if args.method_name:
        return args.method_name
    name = "meta"
    if args.rates == "shared":
        name += "-shared"
    if args.meta == "joint":
        name += "-joint"
    if args.meta_init == "english":
        name += "-english-init"
    if args.rates_param != "sigmoid":
        name += f"-{args.rates_param}"
    if args.meta_gradient == "exact":
        name += "-exact"
    if args.rounds == 0:
        name += "-rounds-0"
    return name + learning_rate_suffix(args)


def main(argv=None):
    """Runs `trainers.meta` on `argv` (default: the command line); True when
    every stage finished and was evaluated."""
    args, plan = parse_run(build_parser(), argv, "meta")
    done = finished_results(plan)
    if done is not None:
        return done
    from trainers.meta_training import train  # TensorFlow, after the checks

    return train(args, method_name(args), plan)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
