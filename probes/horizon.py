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

import sys

from probes.probe_flags import parse_probe_args, probe_parser


def build_parser():
    parser, g = probe_parser(
        "python -m probes.horizon", __doc__, "Held-out pairs the loss is averaged over."
    )
    g.add_argument("--rates", default="0.25,0.5,1", help="Uniform rates λ to try.")
    g.add_argument("--horizons", default="15,45,150", help="Steps H to measure at.")
    return parser


def main(argv=None):
    args = parse_probe_args(build_parser(), argv)
    from probes.horizon_probe import run_horizon  # TensorFlow, after the checks

    return run_horizon(args)


if __name__ == "__main__":
    main()
    sys.exit(0)
