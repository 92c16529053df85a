"""What `python -m trainers.meta` runs (its flags: `trainers.meta`): stages
1–4 of the paper's protocol (`train`) and its Algorithm 1 (`meta_train`).

Algorithm 1 as this module runs it (the paper gives no code; docs/algorithm.md,
"How the paper was read", says where it is silent). The numbers are those of the
comments in `meta_train`:

    (1)  φ ← φ0 (--initial-phi); an Adam for φ (--meta-lr)
    (2)  for round = 1 … N (--rounds):
    (3)      θ ← θ_init, a fresh base Adam: "Initialize θ0 with mBERT and random
             values for the classification layer" (--meta-init pretrained),
             or the English model θ_En (--meta-init english)
    (4)      h ← a held-out source language, uniformly (seeded)
    (5)      S ← the other source languages, each example's language uniform
    (6)      repeat --meta-updates-per-round times:
    (7)          L times (--meta-interval): θ ← θ − λ(φ) ⊙ Adam(∇θ loss(θ; S))
    (8)          g ← ∂ loss(θ; one batch of h) / ∂φ   (first-order, or
                 --meta-gradient exact: through the L steps)
    (9)          φ ← φ − Adam(g)
    (10) return λ(φ)

`meta_train` runs it as these loops. What every stage of every trainer shares
(resume, checkpoints, progress, the SIGINT/SIGTERM stop) is
`trainers.stage_loop.Stage`; a resumed run re-enters round and meta step
where its checkpoint stopped.
"""

import shutil

import keras
import numpy as np
import tensorflow as tf

from keras_metaopt import LayerGroups, MetaOptimizer, MetaStep
from keras_metaopt.formats import (
    EXACT_STATES_DIR,
    META_STATS_JSON,
    MODEL_DIR,
    RATES_JSON,
    holds_classifier,
)
from trainers.learner_init import fresh_head, pretrained_weights
from trainers.process import setup_process
from trainers.reporting import phi_statistics
from trainers.run import Run, logger
from trainers.stage_loop import Stage, aux_stage


def meta_train(run, classifier, sources):
    """Algorithm 1: learns φ; returns the `MetaOptimizer` holding it.

    `classifier` holds the English model θ_En and ends at the last round's
    weights (stage 3 loads θ_En again); `sources` maps each source language to
    its training pairs. The numbers in the comments are the lines of
    Algorithm 1 as the module docstring writes it.
    """
    args = run.args
    if args.rounds == 0:  # no round: nothing to start from
        theta_init = None
    elif args.meta_init == "pretrained":
        theta_init = pretrained_weights(args.preset, classifier)
    else:  # θ_En
        theta_init = [v.numpy() for v in classifier.weights]
    initial_phi = (
        keras.initializers.RandomNormal(0.0, 1.0, seed=args.seed)
        if args.initial_phi == "random"
        else float(args.initial_phi)
    )
    with run.strategy.scope():  # (1) φ and its Adam
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
    # (7)-(9): L inner steps and one φ update, as one compiled step.
    meta_step = MetaStep(
        classifier,
        optimizer,
        args.meta_interval,
        run.strategy,
        state_every=args.state_every if args.meta_gradient == "exact" else None,
        recompute_layers=args.recompute_layers,
        offload_dir=_offload_dir(run),
        hvp_micro_batches=args.hvp_micro_batches,
    )
    phi_start = optimizer.phi.numpy().copy()
    languages = sorted(sources)
    per_round = args.meta_updates_per_round
    # Per φ: how many meta steps lowered it (the φ statistics of the run).
    steps_down = tf.Variable(tf.zeros_like(optimizer.phi, tf.int64), trainable=False)
    stage = Stage(  # resumes at a meta step: `first_k` of round `first_round`
        run,
        "meta",
        classifier,
        args.rounds * per_round,
        checkpoint_every=max(1, args.checkpoint_every // args.meta_interval),
        unit="meta step",
        where="meta step",
        counter="progress",
        optimizer=optimizer,
        steps_down=steps_down,
    )
    first_round, first_k = divmod(stage.done, per_round)
    for round_ in range(first_round, args.rounds):  # (2)
        k0 = first_k if round_ == first_round else 0
        rng = np.random.default_rng([args.seed, round_])
        held_out = None if args.meta == "joint" else str(rng.choice(languages))  # (4)
        train_langs = [x for x in languages if x != held_out]  # (5)
        seed = int(rng.integers(2**31))
        if k0 == 0:  # (3) θ ← θ_init, a fresh base Adam; φ and its Adam persist.
            for variable, value in zip(classifier.weights, theta_init):
                variable.assign(value)
            if args.meta_init == "pretrained":
                fresh_head(classifier, seed)
            optimizer.reset_base_state()
        logger.info(
            "round %d/%d: held out %s, training on %s",
            round_ + 1,
            args.rounds,
            held_out or "(none: joint)",
            ",".join(train_langs),
        )
        # A resumed round skips the batches it had drawn (joint: the meta
        # batch is a training batch too); the streams depend on the seed only.
        per_step = args.meta_interval + (1 if held_out is None else 0)
        train_batches = iter(
            run.dataset(
                {x: sources[x] for x in train_langs},
                classifier.preprocessor,
                seed,
                sampling="uniform",
                skip=k0 * per_step,
            )
        )
        heldout_batches = None
        if held_out:
            heldout_batches = iter(
                run.dataset(
                    {held_out: sources[held_out]},
                    classifier.preprocessor,
                    seed + 1,
                    skip=k0,
                )
            )
        for k in range(k0, per_round):  # (6)
            before = optimizer.phi.numpy()
            result = meta_step(train_batches, heldout_batches)  # (7)-(9)
            steps_down.assign_add(tf.cast(optimizer.phi.numpy() < before, tf.int64))
            last = k + 1 == per_round
            write_meta_summaries(
                run.writer, stage.done + 1, result, optimizer, held_out, languages, last
            )
            stage.advance(  # checkpoints at the end of every round, too
                1,
                {
                    "train_loss": float(result["train_loss"]),
                    "heldout_loss": float(result["heldout_loss"]),
                },
                save=last,
            )
    run.write_json(META_STATS_JSON, phi_statistics(optimizer, phi_start, steps_down))
    return optimizer  # (10)


def write_meta_summaries(writer, step, result, optimizer, held_out, languages, last):
    """TensorBoard at meta step `step`: the meta-gradient's norm, the held-out
    language (its index in `languages`; -1 for none), λ and φ per group, and
    at the `last` step of a round the held-out language's name."""
    rates = optimizer.rates()
    with writer.as_default(step=step):
        tf.summary.scalar("meta/gradient_norm", result["meta_gradient_norm"])
        if "max_adjoint_norm" in result:
            tf.summary.scalar("meta/max_adjoint_norm", result["max_adjoint_norm"])
        tf.summary.scalar(
            "meta/heldout_language",
            -1 if held_out is None else languages.index(held_out),
        )
        tf.summary.histogram("meta/rates", list(rates.values()))
        for group, rate in rates.items():
            tf.summary.scalar(f"rates/{group}", rate)
        names = optimizer.group_names if optimizer.mode == "layerwise" else ["shared"]
        for name, phi in zip(names, optimizer.phi.numpy()):
            tf.summary.scalar(f"phi/{name}", phi)
        if last:
            tf.summary.text("meta/heldout", held_out or "(joint)")


def train(args, method, plan=None):
    """Stages 1–4 for the checked command line `args` and its `plan`
    (`trainers.flags.parse_run`); True when evaluated."""
    run = Run(args, method, setup_process(args), plan)
    stage1 = run.english_model()
    final = run.dir / MODEL_DIR
    if holds_classifier(final):
        return run.evaluate(run.load_classifier(final))

    rates_path = run.dir / RATES_JSON
    if not rates_path.is_file():
        classifier = run.load_classifier(stage1, stage="meta")
        sources = {"en": run.pairs(args.en_split, "en"), **run.aux_pairs()}
        if args.rounds:
            logger.info("stage 2: meta-training φ on %s", ",".join(sources))
        else:
            logger.info("stage 2: --rounds 0, no meta-training: the rates λ(φ0)")
        meta_train(run, classifier, sources).save_rates(rates_path)
    rates = MetaOptimizer.load_rates(rates_path)
    logger.info("learned rates: %s", {g: round(r, 3) for g, r in rates.items()})

    # Stage 3: with the batches and dropout masks of trainers.finetune's
    # auxiliary stage of the same --seed (`aux_stage`), so a meta run and its
    # baseline differ by the rates alone, and `trainers.finetune --rates-from`
    # this run replays its stage 3 bit for bit.
    classifier = aux_stage(
        run,
        stage1,
        lambda _: MetaOptimizer(
            keras.optimizers.Adam(args.learning_rate),
            LayerGroups(frozen=run.frozen),
            mode="fixed",
            initial_rates=rates,
            rates_param=args.rates_param,
        ),
        "stage 3: the learned rates",
    )
    run.save_model(classifier, final)
    return run.evaluate(classifier)


def _offload_dir(run):
    """--offload-states: this process's RUN_DIR/exact-states, emptied of the
    files a killed process may have left mid-window; else None (memory)."""
    if not getattr(run.args, "offload_states", False):
        return None
    path = run.dir / EXACT_STATES_DIR
    shutil.rmtree(path, ignore_errors=True)
    return path
