"""Is Algorithm 1's first-order meta-gradient a descent direction?

    python -m probes.metagrad --init-from runs/xnli-proxy/english-only-seed0 \\
        --data-dir ../shared/data/xnli --preset presets/multilingual_e5_small \\
        --output-dir runs/probe-metagrad --heldout ur --sequence-length 64 \\
        --phi random --window 15 --epsilon 0.25

From the English model θ_En and rates φ (`random`: the seeded N(0, 1) draw
`trainers.meta` starts from; a number for every layer; or a `rates.json`),
the tool trains L = `--window` steps on the other source languages (held-out
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

With `--window 1` the first-order meta-gradient is exact (Adam's first step
does not depend on φ), so the two agree up to O(ε²); for longer windows their
gap is what the first-order approximation drops. Every trajectory uses Keras's
Adam step (ε outside the root), the function the exact gradient differentiates
here. Prints a table and writes `probe.json` and `probe.md` to --output-dir.
"""

import json
import logging
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_metaopt import LayerGroups, MetaOptimizer, TrainStep
from keras_metaopt.exact_meta_gradient import ExactMetaGradient
from probes.probe_setup import heldout_loss, load_probe, probe_parser, start_probe

logger = logging.getLogger("keras_metaopt.probes.metagrad")


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
    g.add_argument("--window", type=int, default=15, help="L: inner steps.")
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


def heldout_grads(classifier, batches):
    """Per-batch (size, mean cross-entropy, gradients), inference mode."""
    variables = classifier.trainable_variables
    out = []
    for features, labels in batches:
        with tf.GradientTape() as tape:
            logits = classifier(features, training=False)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    labels, logits, from_logits=True
                )
            )
        out.append((int(labels.shape[0]), float(loss), tape.gradient(loss, variables)))
    return out


def _initial_phi(args):
    if args.phi == "random":
        return {"initial_phi": keras.initializers.RandomNormal(0.0, 1.0, args.seed)}
    try:
        return {"initial_phi": float(args.phi)}
    except ValueError:
        return {"initial_rates": MetaOptimizer.load_rates(args.phi)}


def _check(args):
    if args.window < 1 or args.epsilon <= 0:
        return "--window must be >= 1 and --epsilon > 0."
    if not 1 <= args.state_every <= args.window:
        return "--state-every must be in [1, --window]."
    return None


def main(argv=None):
    run = start_probe(build_parser(), argv, "probe-metagrad", check=_check)
    args = run.args
    classifier, train_langs, batches, n = load_probe(run)
    # θ_En and the dropout seed states: every trajectory sees the same masks.
    theta_en = [v.numpy() for v in classifier.variables]
    with run.strategy.scope():
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(args.learning_rate),
            LayerGroups(frozen=run.frozen),
            mode="layerwise",
            meta_gradient=args.meta_gradient,
            epsilon_inside_root=False,  # Keras's Adam, as in the committed probes
            **_initial_phi(args),
        )
        optimizer.build(classifier.trainable_variables)
    phi0 = optimizer.phi.numpy().copy()
    train = TrainStep(classifier, optimizer, args.window, run.strategy)

    def start(phi):
        """θ_En, a fresh base Adam, rates φ; returns the training stream."""
        for variable, value in zip(classifier.variables, theta_en):
            variable.assign(value)
        optimizer.reset_base_state()
        optimizer.phi.assign(phi)
        return iter(
            run.dataset(
                train_langs, classifier.preprocessor, args.seed, sampling="uniform"
            )
        )

    def trajectory(phi):
        """Trains L steps from θ_En at φ (no φ update); returns the train loss."""
        return float(train(start(phi)))

    logger.info(
        "held out %s (%d pairs in %d batches), training on %s for L = %d steps",
        args.heldout,
        n,
        len(batches),
        ",".join(sorted(train_langs)),
        args.window,
    )
    train_loss = trajectory(phi0)
    results = heldout_grads(classifier, batches)
    loss0 = sum(size * loss for size, loss, _ in results) / n
    variables = classifier.trainable_variables
    per_batch = np.stack(
        [optimizer.meta_gradient(grads, variables).numpy() for _, _, grads in results]
    )
    weights = np.array([size for size, _, _ in results], dtype=np.float64) / n
    g = weights @ per_batch.astype(np.float64)
    sign_agree = np.mean(np.sign(per_batch) == np.sign(g), axis=0)
    logger.info("held-out loss after L steps at φ0: %.6f", loss0)

    exact = None
    if args.meta_gradient == "exact":
        stream = start(phi0)
        window = ExactMetaGradient(
            classifier,
            optimizer,
            train.loss_from_logits,
            args.window,
            args.state_every,
        )
        window_batches = [next(stream) for _ in range(args.window)]
        result = window.run(window_batches, list(batches))
        exact = result["meta_gradient"].numpy().astype(np.float64)
        logger.info(
            "exact meta-gradient: held-out loss %.6f (pairs weighted), "
            "largest adjoint norm %.3e",
            float(result["heldout_loss"]),
            float(result["max_adjoint_norm"]),
        )

    directions = {
        "uniform": np.ones_like(g) / np.sqrt(g.size),
        "first-order": g / np.linalg.norm(g),
    }
    if exact is not None:
        directions["exact"] = exact / np.linalg.norm(exact)
    checks = {}
    for name, u in directions.items():
        trajectory(phi0 + args.epsilon * u)
        plus = heldout_loss(classifier, batches)
        trajectory(phi0 - args.epsilon * u)
        minus = heldout_loss(classifier, batches)
        checks[name] = {
            "loss_plus": plus,
            "loss_minus": minus,
            "finite_difference": (plus - minus) / (2 * args.epsilon),
            "first_order": float(g @ u),
        }
        if exact is not None:
            checks[name]["exact"] = float(exact @ u)
        logger.info("direction %s: %s", name, checks[name])
    trajectory(phi0)
    repeat = heldout_loss(classifier, batches)

    report = {
        "heldout": args.heldout,
        "train_languages": sorted(train_langs),
        "heldout_examples": n,
        "heldout_batches": len(batches),
        "window": args.window,
        "epsilon": args.epsilon,
        "groups": optimizer.group_names,
        "phi0": phi0.tolist(),
        "train_loss": train_loss,
        "heldout_loss": loss0,
        "heldout_loss_repeat": repeat,
        "meta_gradient_mean": g.tolist(),
        "meta_gradient_batch_std": per_batch.std(axis=0).tolist(),
        "meta_gradient_sign_agreement": sign_agree.tolist(),
        "meta_gradient_exact": None if exact is None else exact.tolist(),
        "directional": checks,
    }
    text = _format(report)
    print(text)
    (run.dir / "probe.md").write_text(text, encoding="utf-8")
    (run.dir / "probe.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def _format(r):
    exact = r.get("meta_gradient_exact") is not None
    lines = [
        f"held out {r['heldout']} ({r['heldout_examples']} pairs, "
        f"{r['heldout_batches']} batches); L = {r['window']}; held-out loss after "
        f"L steps {r['heldout_loss']:.6f} (re-run: {r['heldout_loss_repeat']:.6f})",
        "",
        "first-order dL/dφ per group: mean over the held-out pairs, std across "
        "single batches, share of single batches with the mean's sign",
        "",
        "| group | φ0 | mean | batch std | same sign |",
        "|---|---|---|---|---|",
    ]
    for i, group in enumerate(r["groups"]):
        lines.append(
            f"| {group} | {r['phi0'][i]:+.3f} | {r['meta_gradient_mean'][i]:+.2e} | "
            f"{r['meta_gradient_batch_std'][i]:.2e} | "
            f"{r['meta_gradient_sign_agreement'][i]:.0%} |"
        )
    lines += [
        "",
        f"directional derivative of the held-out loss after L steps "
        f"(central difference, ε = {r['epsilon']:g}) against the first-order "
        "prediction",
        "",
        "| direction u | L(φ0+εu) | L(φ0−εu) | finite difference | first-order ⟨g,u⟩ |"
        + (" exact ⟨g*,u⟩ |" if exact else ""),
        "|---|---|---|---|---|" + ("---|" if exact else ""),
    ]
    for name, c in r["directional"].items():
        lines.append(
            f"| {name} | {c['loss_plus']:.6f} | {c['loss_minus']:.6f} | "
            f"{c['finite_difference']:+.3e} | {c['first_order']:+.3e} |"
            + (f" {c['exact']:+.3e} |" if exact else "")
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
    sys.exit(0)
