"""The work of `python -m probes.metagrad` (TensorFlow), after its command line
is parsed and checked (`probes.metagrad`, whose docstring says what it measures)."""

import json
import logging

import keras
import numpy as np
import tensorflow as tf

from keras_metaopt import LayerGroups, MetaOptimizer, TrainStep
from keras_metaopt.exact_meta_gradient import ExactMetaGradient
from keras_metaopt.formats import PROBE_JSON, PROBE_MD
from probes.probe_setup import heldout_loss, load_probe, open_probe

logger = logging.getLogger("keras_metaopt.probes.metagrad")


def run_metagrad(args):
    run = open_probe(args, "probe-metagrad")
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
    train = TrainStep(classifier, optimizer, args.meta_interval, run.strategy)

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
        args.meta_interval,
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
            args.meta_interval,
            args.state_every,
        )
        window_batches = [next(stream) for _ in range(args.meta_interval)]
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
        "window": args.meta_interval,  # probe.json's name for L
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
    (run.dir / PROBE_MD).write_text(text, encoding="utf-8")
    (run.dir / PROBE_JSON).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


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
