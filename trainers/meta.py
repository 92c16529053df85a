"""The paper's protocol: soft layer selection with meta-learning (Xu et al., 2021).

    python -m trainers.meta --aux el,ur --data-dir ../shared/data/xnli \\
        --preset presets/e5-small --output-dir runs/meta

1. Fine-tune on English (or `--init-from` a stage-1 model shared by methods).
2. Meta-train φ by Algorithm 1: each round re-initialise the learner (to the
   English model, or with `--meta-init pretrained` to the pretrained encoder
   with a fresh head, as the paper's Algorithm 1 does), hold out one source
   language (English + auxiliaries), train on the others and update φ every L
   steps from the held-out loss (first-order, or `--meta-gradient exact`).
3. Fine-tune the English model on the auxiliary languages with the learned
   rates λ(φ) (MetaOptimizer in `fixed` mode).
4. Evaluate every language of `--eval-split`.
Ablations: `--rates shared` (one rate for all layers), `--meta joint` (φ from
the training loss, no held-out language). A killed run resumes where it stopped.
"""

import argparse
import sys

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from keras_metaopt import LayerGroups, MetaOptimizer, MetaStep
from keras_metaopt.formats import META_STATS_JSON, MODEL_DIR, RATES_JSON
from keras_metaopt.rate_param import RATE_PARAMS
from trainers.common import (
    Run,
    add_common_flags,
    learning_rate_suffix,
    logger,
    parse_args,
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m trainers.meta",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_flags(parser)
    g = parser.add_argument_group("meta-training (Algorithm 1)")
    g.add_argument(
        "--rounds", type=int, default=10, help="N: rounds, each with a fresh learner."
    )
    g.add_argument(
        "--meta-interval", type=int, default=15, help="L: inner steps per φ update."
    )
    g.add_argument(
        "--meta-updates-per-round",
        type=int,
        default=10,
        help="φ updates per round (a round is this × L inner steps).",
    )
    g.add_argument(
        "--meta-lr", type=float, default=0.05, help="Adam learning rate of φ."
    )
    g.add_argument(
        "--initial-phi",
        default="random",
        help="'random' (φ ~ N(0, 1), seeded) or a number for every layer.",
    )
    g.add_argument(
        "--rates",
        choices=["layerwise", "shared"],
        default="layerwise",
        help="One φ per layer, or one shared φ (ablation).",
    )
    g.add_argument(
        "--meta",
        choices=["heldout", "joint"],
        default="heldout",
        help="φ from a held-out language's loss, or from the training loss (ablation).",
    )
    g.add_argument(
        "--meta-init",
        choices=["english", "pretrained"],
        default="english",
        help="Where each round starts: the English model of stage 1, or the "
        "pretrained encoder with a fresh head (the paper's literal Algorithm 1).",
    )
    g.add_argument(
        "--rates-param",
        choices=RATE_PARAMS,
        default="sigmoid",
        help="λ(φ): sigmoid (the paper's, λ < 1), scaled-sigmoid (2σ, λ < 2) or "
        "exp (λ ≤ 4); with the last two φ = 0 is plain fine-tuning.",
    )
    g.add_argument(
        "--meta-gradient",
        choices=["first_order", "exact"],
        default="first_order",
        help="first_order (the paper's) or exact: reverse mode through the L "
        "inner steps (second order, about 3x the time of a window).",
    )
    g.add_argument(
        "--state-every",
        type=int,
        default=1,
        help="exact: keep every k-th inner state and recompute the others "
        "(memory ~ L/k + k states instead of L + 1).",
    )
    g.add_argument(
        "--meta-clipnorm",
        type=float,
        help="Clip the norm of each meta-gradient dL/dφ to this value.",
    )
    return parser


def method_name(args):
    name = "meta"
    if args.rates == "shared":
        name += "-shared"
    if args.meta == "joint":
        name += "-joint"
    if args.meta_init == "pretrained":
        name += "-pretrained-init"
    if args.rates_param != "sigmoid":
        name += f"-{args.rates_param}"
    if args.meta_gradient == "exact":
        name += "-exact"
    return name + learning_rate_suffix(args)


def fresh_head(classifier, seed):
    """Re-initialises the classifier's own Dense layers (not the backbone's).

    Each kernel and bias is drawn anew from its layer's initializer with a
    seed derived from `seed`: Algorithm 1's "random values for the
    classification layer" at the start of a round.
    """
    dense = [
        layer
        for layer in classifier.layers
        if isinstance(layer, keras.layers.Dense) and layer.weights
    ]
    for i, layer in enumerate(dense):
        for j, (variable, init) in enumerate(
            (
                (layer.kernel, layer.kernel_initializer),
                (layer.bias, layer.bias_initializer),
            )
        ):
            if variable is None:
                continue
            config = init.get_config()
            if "seed" in config:
                config["seed"] = (int(seed) + 2 * i + j) % 2**31
            value = type(init).from_config(config)(variable.shape, variable.dtype)
            variable.assign(value)


def pretrained_weights(preset, classifier):
    """Algorithm 1's θ_init: `classifier`'s weights, its encoder's from `preset`.

    The head keeps the classifier's values here; `fresh_head` redraws it at
    the start of every round. Only the backbone is loaded: no second
    tokenizer, and no `keras.utils.set_random_seed` (that clears TF's kernel
    cache, which frees the SentencePiece resource of the classifier's own
    preprocessor: the e5 tokenizer's streams would then fail with NotFound).
    """
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    ours = classifier.backbone.weights
    if [v.path for v in backbone.weights] != [v.path for v in ours]:
        raise ValueError(
            f"--preset {preset} and the English model have different encoder "
            "weights: --meta-init pretrained needs the preset stage 1 started from."
        )
    pretrained = {id(v): w.numpy() for v, w in zip(ours, backbone.weights)}
    del backbone
    return [pretrained.get(id(v), v.numpy()) for v in classifier.weights]


def meta_train(run, classifier, sources):
    """Algorithm 1: learns φ; returns the `MetaOptimizer` holding it.

    `classifier` holds the English model θ_En; `sources` maps each source
    language to its training pairs. Each round starts from θ_init: the
    pretrained encoder with a fresh head (`--meta-init pretrained`), or θ_En.
    """
    args = run.args
    theta_en = [v.numpy() for v in classifier.weights]
    if args.meta_init == "pretrained":
        theta_init = pretrained_weights(args.preset, classifier)
    else:
        theta_init = theta_en
    initial_phi = (
        keras.initializers.RandomNormal(0.0, 1.0, seed=args.seed)
        if args.initial_phi == "random"
        else float(args.initial_phi)
    )
    with run.strategy.scope():
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(args.learning_rate),
            LayerGroups(frozen=run.frozen),
            mode=args.rates,
            initial_phi=initial_phi,
            phi_optimizer=keras.optimizers.Adam(args.meta_lr),
            rates_param=args.rates_param,
            meta_gradient=args.meta_gradient,
            meta_clipnorm=args.meta_clipnorm,
        )
        optimizer.build(classifier.trainable_variables)
    step = MetaStep(
        classifier,
        optimizer,
        args.meta_interval,
        run.strategy,
        state_every=args.state_every if args.meta_gradient == "exact" else None,
    )
    phi_start = optimizer.phi.numpy().copy()
    languages = sorted(sources)
    per_round, total = (
        args.meta_updates_per_round,
        args.rounds * args.meta_updates_per_round,
    )

    # A meta step is the unit of progress and of checkpoints.
    progress = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Per φ: how many meta steps lowered it (the φ statistics of the run).
    steps_down = tf.Variable(tf.zeros_like(optimizer.phi, tf.int64), trainable=False)
    state, manager = run.checkpoints(
        "meta",
        classifier,
        optimizer=optimizer,
        progress=progress,
        steps_down=steps_down,
    )
    if manager.latest_checkpoint:  # model, φ, both optimizers, progress
        state.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logger.info("meta: resuming at meta step %d/%d", int(progress), total)
    every = max(1, args.checkpoint_every // args.meta_interval)
    bar = keras.utils.Progbar(total, unit_name="meta step")
    bar.update(int(progress))

    while int(progress) < total:
        round_, k = divmod(int(progress), per_round)
        rng = np.random.default_rng([args.seed, round_])
        held_out = None if args.meta == "joint" else str(rng.choice(languages))
        train_langs = [x for x in languages if x != held_out]
        seed = int(rng.integers(2**31))
        if k == 0:  # Re-initialise the learner: θ ← θ_init, a fresh base Adam.
            for variable, value in zip(classifier.weights, theta_init):
                variable.assign(value)
            if args.meta_init == "pretrained":
                fresh_head(classifier, seed)
            optimizer.reset_base_state()
        # Batches already drawn in this round (joint: the meta batch is a
        # training batch too) are skipped; the streams depend on the seed only.
        per_step = args.meta_interval + (1 if held_out is None else 0)
        train_it = iter(
            run.dataset(
                {x: sources[x] for x in train_langs},
                classifier.preprocessor,
                seed,
                sampling="uniform",
                skip=k * per_step,
            )
        )
        heldout_it = None
        if held_out:
            heldout_it = iter(
                run.dataset(
                    {held_out: sources[held_out]},
                    classifier.preprocessor,
                    seed + 1,
                    skip=k,
                )
            )
        logger.info(
            "round %d/%d: held out %s, training on %s",
            round_ + 1,
            args.rounds,
            held_out or "(none: joint)",
            ",".join(train_langs),
        )
        for _ in range(k, per_round):
            before = optimizer.phi.numpy()
            result = step(train_it, heldout_it)
            progress.assign_add(1)
            steps_down.assign_add(tf.cast(optimizer.phi.numpy() < before, tf.int64))
            rates = optimizer.rates()
            with run.writer.as_default(step=int(progress)):
                tf.summary.scalar("meta/train_loss", result["train_loss"])
                tf.summary.scalar("meta/heldout_loss", result["heldout_loss"])
                tf.summary.scalar("meta/gradient_norm", result["meta_gradient_norm"])
                if "max_adjoint_norm" in result:
                    tf.summary.scalar(
                        "meta/max_adjoint_norm", result["max_adjoint_norm"]
                    )
                tf.summary.scalar(
                    "meta/heldout_language",
                    -1 if held_out is None else languages.index(held_out),
                )
                tf.summary.histogram("meta/rates", list(rates.values()))
                for group, rate in rates.items():
                    tf.summary.scalar(f"rates/{group}", rate)
                names = (
                    optimizer.group_names if args.rates == "layerwise" else ["shared"]
                )
                for name, phi in zip(names, optimizer.phi.numpy()):
                    tf.summary.scalar(f"phi/{name}", phi)
            bar.update(
                int(progress),
                values=[
                    ("train_loss", float(result["train_loss"])),
                    ("heldout_loss", float(result["heldout_loss"])),
                ],
            )
            if int(progress) % every == 0 or int(progress) % per_round == 0:
                manager.save(checkpoint_number=int(progress))
            run.stop_point(manager, int(progress), f"meta step {int(progress)}/{total}")
        with run.writer.as_default(step=int(progress)):
            tf.summary.text("meta/heldout", held_out or "(joint)")
    for variable, value in zip(classifier.weights, theta_en):
        variable.assign(value)
    run.write_json(META_STATS_JSON, phi_statistics(optimizer, phi_start, steps_down))
    return optimizer


def phi_statistics(optimizer, phi_start, steps_down):
    """How far φ moved from its start, and how often it went down.

    Written to `meta_stats.json`: with too few or mis-signed φ updates the
    learned rates are only the initialisation (BENCHMARKS.md, xnli-proxy).
    """
    phi = optimizer.phi.numpy().astype(np.float64)
    start = np.asarray(phi_start, np.float64)
    names = optimizer.group_names if optimizer.mode != "shared" else ["shared"]
    updates = int(optimizer.phi_optimizer.iterations.numpy())
    moved = np.abs(phi - start)
    stats = {
        "phi_updates": updates,
        "phi_start": dict(zip(names, start.tolist())),
        "phi_end": dict(zip(names, phi.tolist())),
        "displacement_max": float(moved.max()),
        "displacement_mean": float(moved.mean()),
        "share_steps_down": float(np.asarray(steps_down.numpy()).sum())
        / max(1, updates * len(names)),
        "mean_rate": float(np.mean(list(optimizer.rates().values()))),
    }
    if len(names) > 1 and start.std() > 0 and phi.std() > 0:
        stats["corr_start_end"] = float(np.corrcoef(start, phi)[0, 1])
    return stats


def main(argv=None):
    args = parse_args(build_parser(), argv, trainer="meta")
    run = Run(args, method_name(args))
    stage1 = run.english_model()
    final = run.dir / MODEL_DIR
    if (final / "task.json").is_file():
        return run.evaluate(run.load_classifier(final))

    classifier = run.load_classifier(stage1, stage="meta")
    rates_path = run.dir / RATES_JSON
    if not rates_path.is_file():
        sources = {"en": run.pairs(args.en_split, "en"), **run.aux_pairs()}
        logger.info("stage 2: meta-training φ on %s", ",".join(sources))
        meta_train(run, classifier, sources).save_rates(rates_path)
    rates = MetaOptimizer.load_rates(rates_path)
    logger.info("learned rates: %s", {g: round(r, 3) for g, r in rates.items()})

    with run.strategy.scope():
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(args.learning_rate),
            LayerGroups(frozen=run.frozen),
            mode="fixed",
            initial_rates=rates,
            rates_param=args.rates_param,
        )
    pairs = run.aux_pairs()
    steps = run.steps(pairs, args.aux_epochs, args.aux_steps)
    logger.info("stage 3: auxiliary languages with the learned rates, %d steps", steps)
    run.finetune("aux", classifier, optimizer, pairs, steps)
    run.save_model(classifier, final)
    return run.evaluate(classifier)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
