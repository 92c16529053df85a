"""The one resumable stage loop of every trainer.

A stage (the English stage, Algorithm 1's meta-training, the auxiliary stage)
is a number of units of work (training steps, or meta steps). `run_stage`
does what all of them share: restore the stage's checkpoint and resume where
it stopped, show progress, log to TensorBoard, checkpoint every so often and
at the end, and stop at a unit boundary with a checkpoint after SIGINT /
SIGTERM. What a unit does is the trainer's `step` function.
"""

import logging

import numpy as np
import tensorflow as tf

from keras_metaopt import TrainStep, cli
from keras_metaopt.formats import CHECKPOINTS_DIR

logger = logging.getLogger("keras_metaopt.trainers")


def run_stage(
    run,
    name,
    model,
    total,
    step,
    *,
    checkpoint_every,
    unit="step",
    counter="done",
    save_at=None,
    where=None,
    **objects,
):
    """Runs the stage `name` of `run` to `total` units; resumable.

    `step(done)` does the work from unit `done` on and returns `(n, logs)`:
    how many units it did and `{key: float}`, shown on the progress bar and
    logged to TensorBoard as `<name>/<key>` at the new unit count. `model` and
    `objects` (optimizers, statistics variables) are checkpointed under
    `checkpoints/<name>` (with the unit count as `counter`) whenever the count
    crosses a multiple of `checkpoint_every`, where `save_at(done)` is true,
    and at the end. After SIGINT / SIGTERM it stops at a unit boundary, saying
    where (`where`, default `<name> <unit>`, then the unit count). Returns the unit count it started from (0 unless resumed).
    """
    done = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint, manager = checkpoints(run, name, model, **{counter: done}, **objects)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logger.info("%s: resuming at %s %d/%d", name, unit, int(done), total)
    start = int(done)
    progress = cli.Progress(name, total, unit, start)
    while int(done) < total:
        n, logs = step(int(done))
        done.assign_add(n)
        now = int(done)
        progress.update(now, logs.items())
        with run.writer.as_default(step=now):
            for key, value in logs.items():
                tf.summary.scalar(f"{name}/{key}", value)
        if now % checkpoint_every < n or now == total or (save_at and save_at(now)):
            manager.save(checkpoint_number=now)
        stop_point(manager, now, f"{where or name + ' ' + unit} {now}/{total}")
    return start


def train_stage(run, name, classifier, optimizer, pairs_by_lang, steps):
    """Trains `classifier` with `optimizer` for `steps` steps on `pairs_by_lang`.

    Batches come from `run.dataset` with the stage's own seed; a resumed stage
    skips the batches it had consumed. Steps run `--log-every` at a time in
    one compiled `TrainStep` (fewer at a checkpoint and at the end).
    """
    args = run.args
    with run.strategy.scope():
        optimizer.build(classifier.trainable_variables)
    chunk = max(1, min(args.log_every, args.checkpoint_every))
    compiled = {}
    batches = {}

    def step(done):
        if "it" not in batches:  # first call: the stream resumes at `done`
            seed = stage_seed(args.seed, name)
            stream = run.dataset(
                pairs_by_lang, classifier.preprocessor, seed, skip=done
            )
            batches["it"] = iter(stream)
        n = min(chunk, steps - done)
        compiled.setdefault(n, TrainStep(classifier, optimizer, n, run.strategy))
        return n, {"loss": float(compiled[n](batches["it"]))}

    run_stage(
        run,
        name,
        classifier,
        steps,
        step,
        checkpoint_every=args.checkpoint_every,
        optimizer=optimizer,
    )
    return classifier


def checkpoints(run, name, model, **objects):
    """A checkpoint of `model` and `objects` under `checkpoints/<name>`.

    The dropout RNG states are added: tf.train.Checkpoint does not reach
    Keras' seed generators, and a resumed run must draw the same masks.
    A training loop follows: from here a SIGINT/SIGTERM waits for its next
    step boundary (`stop_point`).
    """
    cli.set_training(True)
    rng = [v.value for v in model.variables if v.path.endswith("seed_generator_state")]
    checkpoint = tf.train.Checkpoint(model=model, dropout_rng=rng, **objects)
    manager = tf.train.CheckpointManager(
        checkpoint, str(run.dir / CHECKPOINTS_DIR / name), max_to_keep=2
    )
    return checkpoint, manager


def stop_point(manager, number, where):
    """A unit boundary: after SIGINT/SIGTERM, checkpoint `number` and exit."""

    def save():
        latest = manager.latest_checkpoint
        if not (latest and latest.endswith(f"-{number}")):
            manager.save(checkpoint_number=number)

    cli.stop_point(where, save)


def stage_seed(seed, name):
    """The seed of stage `name` of a run with `--seed seed`."""
    return int(np.random.SeedSequence([seed, *name.encode()]).generate_state(1)[0])
