"""Is Algorithm 1's first-order meta-gradient a descent direction?

    python -m probes.metagrad --init-from runs/xnli-proxy/english-only-seed0 \\
        --data-dir ../shared/data/xnli --preset presets/multilingual_e5_small \\
        --output-dir runs/probe-metagrad --heldout ur --sequence-length 64 \\
        --phi random --meta-interval 15 --epsilon 0.25

From the English model θ_En and rates φ (`random`: the seeded N(0, 1) draw
`trainers.meta` starts from; a number for every layer; or a `rates.json`),
the tool trains L = `--meta-interval` steps on the other source languages (held-out
`--heldout`), exactly as one window of Algorithm 1, and then measures:

1. the first-order meta-gradient g = dL_test/dφ that `MetaOptimizer` applies,
   on each held-out batch separately: its mean over `--heldout-examples`
   pairs, its spread across batches, and how often a single batch (what
   Algorithm 1 uses per φ update) has the sign of the mean;
2. the true directional derivative of the meta-objective, the held-out loss
   after L steps, by central finite differences: the window is re-run from
   θ_En at φ ± ε·u with the same batches and dropout masks, for u = the
   uniform direction (all rates up) and u = the first-order direction ĝ.
   The first-order prediction of each is ⟨g, u⟩.

3. with `--meta-gradient exact`, the exact meta-gradient of the same
   objective (reverse mode through the L steps, `ExactMetaGradient`, seeded
   with the mean held-out gradient over `--heldout-examples` pairs) and its
   prediction ⟨g*, u⟩ of each directional derivative.

With `--meta-interval 1` the first-order meta-gradient is exact (Adam's first step
does not depend on φ), so the two agree up to O(ε²); for longer windows their
gap is what the first-order approximation drops. Every trajectory uses Keras's
Adam step (ε outside the root), the function the exact gradient differentiates
here. Prints a table and writes `probe.json` and `probe.md` to --output-dir.
"""

import sys

from probes.probe_flags import parse_probe_args, probe_parser


def build_parser():
    parser, g = probe_parser(
        "python -m probes.metagrad",
        __doc__,
        "Held-out pairs the loss and the gradients are averaged over.",
    )
    g.add_argument(
        "--phi",
        default="random",
        help="'random' (N(0, 1) seeded by --seed, as trainers.meta), a number, "
        "or a rates.json from a meta run.",
    )
    g.add_argument("--meta-interval", type=int, default=15, help="L: inner steps.")
    g.add_argument(
        "--epsilon", type=float, default=0.25, help="Finite-difference step in φ."
    )
    g.add_argument(
        "--meta-gradient",
        choices=["first_order", "exact"],
        default="first_order",
        help="exact: also compute the exact meta-gradient (reverse mode through "
        "the window) and its directional predictions.",
    )
    g.add_argument(
        "--state-every",
        type=int,
        default=1,
        help="exact: keep every k-th inner state (memory against recomputation).",
    )
    return parser


def _check(args):
    if args.meta_interval < 1 or args.epsilon <= 0:
        return "--meta-interval must be >= 1 and --epsilon > 0."
    if not 1 <= args.state_every <= args.meta_interval:
        return "--state-every must be in [1, --meta-interval]."
    return None


def main(argv=None):
    args = parse_probe_args(build_parser(), argv, check=_check)
    from probes.metagrad_probe import run_metagrad  # TensorFlow, after the checks

    return run_metagrad(args)


if __name__ == "__main__":
    main()
    sys.exit(0)
