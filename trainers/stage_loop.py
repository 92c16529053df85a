"""The one resumable stage loop of every trainer.

A stage (the English stage, Algorithm 1's meta-training, the auxiliary stage)
is a number of units of work (training steps, or meta steps). `Stage` does
what all of them share: restore the stage's checkpoint and resume where it
stopped, show progress, log to TensorBoard, checkpoint every so often and at
the end, and stop at a unit boundary with a checkpoint after SIGINT / SIGTERM.
The loop itself, and what a unit does, is the trainer's: `train_stage` for
plain training steps, `trainers.meta_training.meta_train` for Algorithm 1.
"""

import logging

import numpy as np
import tensorflow as tf

from keras_metaopt import TrainStep, cli
from keras_metaopt.formats import CHECKPOINTS_DIR

logger = logging.getLogger("keras_metaopt.trainers")


class Stage:
    """One resumable stage of a run, `total` units long; the caller owns the loop.

        stage = Stage(run, "en", model, total, checkpoint_every=60, optimizer=opt)
        while stage.done < total:
            loss = ...                      # n units of work from stage.done on
            stage.advance(n, {"loss": loss})

    Creating it restores the stage's checkpoint (`checkpoints/<name>`: `model`
    and `objects` such as optimizers and statistics variables, with the unit
    count as `counter`), so `done` is where the stage resumes (0 if new).
    `advance` does what every stage shares: progress, TensorBoard
    (`<name>/<key>` at the new unit count), a checkpoint whenever the count
    crosses a multiple of `checkpoint_every`, where the caller asks (`save`),
    and at the end, and the stop after SIGINT / SIGTERM at a unit boundary,
    saying where (`where`, default `<name> <unit>`, then the unit count).
    """

    def __init__(
        self,
        run,
        name,
        model,
        total,
        *,
        checkpoint_every,
        unit="step",
        counter="done",
        where=None,
        **objects,
    ):
        self.run, self.name, self.total = run, name, total
        self.checkpoint_every = checkpoint_every
        self.where = where or f"{name} {unit}"
        self._done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._checkpoint, self._manager = checkpoints(
            run, name, model, **{counter: self._done}, **objects
        )
        if self._manager.latest_checkpoint:
            self._checkpoint.restore(
                self._manager.latest_checkpoint
            ).assert_existing_objects_matched()
            logger.info("%s: resuming at %s %d/%d", name, unit, self.done, total)
        self._progress = cli.Progress(name, total, unit, self.done)

    @property
    def done(self):
        """Units done so far (restored ones included)."""
        return int(self._done)

    def advance(self, n, logs, save=False):
        """Records `n` more units done, with `logs` (`{key: float}`) for them."""
        self._done.assign_add(n)
        now = self.done
        self._progress.update(now, logs.items())
        with self.run.writer.as_default(step=now):
            for key, value in logs.items():
                tf.summary.scalar(f"{self.name}/{key}", value)
        if now % self.checkpoint_every < n or now == self.total or save:
            self._manager.save(checkpoint_number=now)
        stop_point(self._manager, now, f"{self.where} {now}/{self.total}")


def train_stage(run, name, classifier, optimizer, pairs_by_lang, steps):
    """Trains `classifier` with `optimizer` for `steps` steps on `pairs_by_lang`.

    Batches come from `run.dataset` with the stage's own seed; a resumed stage
    skips the batches it had consumed. Steps run `--log-every` at a time in
    one compiled `TrainStep` (fewer at a checkpoint and at the end).
    """
    args = run.args
    with run.strategy.scope():
        optimizer.build(classifier.trainable_variables)
    stage = Stage(
        run,
        name,
        classifier,
        steps,
        checkpoint_every=args.checkpoint_every,
        optimizer=optimizer,
    )
    if stage.done == steps:
        return classifier
    seed = seed_of_stage(args, name)
    batches = iter(
        run.dataset(pairs_by_lang, classifier.preprocessor, seed, skip=stage.done)
    )
    chunk = max(1, min(args.log_every, args.checkpoint_every))
    compiled = {}  # one TrainStep per number of steps it runs
    while stage.done < steps:
        n = min(chunk, steps - stage.done)
        train_steps = compiled.setdefault(
            n, TrainStep(classifier, optimizer, n, run.strategy)
        )
        stage.advance(n, {"loss": float(train_steps(batches))})
    return classifier


def aux_stage(run, stage1, optimizer_of, what, frozen=None):
    """The auxiliary stage of every trainer; returns the trained classifier.

    The English model `stage1` is loaded with the seed of stage "aux" (and
    `frozen` groups), so for one --seed every trainer's auxiliary stage draws
    the same batches and dropout masks (common random numbers): two runs
    differ by their optimizers alone, `optimizer_of(classifier)`'s, made in
    the strategy's scope. `what` names the stage in the log.
    """
    classifier = run.load_classifier(stage1, frozen=frozen, stage="aux")
    with run.strategy.scope():
        optimizer = optimizer_of(classifier)
    pairs = run.aux_pairs()
    steps = run.steps(pairs, run.args.aux_epochs, run.args.aux_steps)
    logger.info("%s on %s, %d steps", what, ",".join(pairs), steps)
    return train_stage(run, "aux", classifier, optimizer, pairs, steps)


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


def seed_of_stage(args, name):
    """The seed of stage `name` of a run with flags `args`: from `--seed`, the
    auxiliary stage's from `--aux-seed` when given (its batches and dropout
    masks drawn anew, the English model and everything else kept)."""
    aux_seed = getattr(args, "aux_seed", None)
    return stage_seed(
        aux_seed if name == "aux" and aux_seed is not None else args.seed, name
    )
