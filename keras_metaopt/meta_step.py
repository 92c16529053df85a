"""One compiled meta step: L inner steps, then one update of φ."""

import tensorflow as tf

from keras_metaopt.train_step import TrainStep


class MetaStep:
    """The inner part of Algorithm 1, compiled once with `tf.function`.

    A call runs `steps_per_meta_update` (L) training steps of `model` with
    `optimizer` (a `MetaOptimizer`) on batches from `train_iterator`, then one
    held-out forward/backward on a batch from `heldout_iterator` and the φ
    update from its first-order meta-gradient. With `heldout_iterator=None`
    (the "joint" ablation) that batch is the next *training* batch instead.

    Losses are averaged with `tf.nn.compute_average_loss`, so the step runs
    unchanged under `tf.distribute` strategies: create the model and the
    optimizer in `strategy.scope()` and pass distributed iterators.

    Args:
        model: A Keras classifier mapping features to logits.
        optimizer: A built or unbuilt `MetaOptimizer`.
        steps_per_meta_update: L, the inner steps per φ update (paper: 15).
        strategy: A `tf.distribute.Strategy`; defaults to the current one.

    Example:

    >>> step = MetaStep(classifier, MetaOptimizer(), steps_per_meta_update=15)
    >>> losses = step(iter(train_ds), iter(heldout_ds))
    >>> losses["heldout_loss"]
    """

    def __init__(self, model, optimizer, steps_per_meta_update=15, strategy=None):
        if steps_per_meta_update < 1:
            raise ValueError(
                f"steps_per_meta_update must be >= 1; got {steps_per_meta_update}."
            )
        self.model = model
        self.optimizer = optimizer
        self.steps_per_meta_update = steps_per_meta_update
        self.strategy = strategy or tf.distribute.get_strategy()
        self._inner = TrainStep(model, optimizer, strategy=self.strategy)
        self._compiled = tf.function(self._meta_step)

    def __call__(self, train_iterator, heldout_iterator=None):
        """Runs one meta step; returns `{"train_loss", "heldout_loss", "meta_gradient"}`."""
        if not self.optimizer.built:
            with self.strategy.scope():
                self.optimizer.build(self.model.trainable_variables)
        # Joint: None is passed on, not the training iterator a second time:
        # as two arguments, the graph would not order the meta batch's
        # `next` after the inner steps' (it was drawn after the first one).
        return self._compiled(train_iterator, heldout_iterator)

    def _meta_step(self, train_iterator, heldout_iterator):
        if heldout_iterator is None:
            heldout_iterator = train_iterator
        total = tf.constant(0.0, self._inner.loss_dtype)
        for _ in tf.range(self.steps_per_meta_update):
            loss = self.strategy.run(
                self._inner.replica_step, args=(next(train_iterator),)
            )
            total += self.strategy.reduce("SUM", loss, axis=None)
        loss, meta_grad = self.strategy.run(
            self._meta_update, args=(next(heldout_iterator),)
        )
        return {
            "train_loss": total / self.steps_per_meta_update,
            "heldout_loss": self.strategy.reduce("SUM", loss, axis=None),
            "meta_gradient": self.strategy.reduce("SUM", meta_grad, axis=None),
        }

    def _meta_update(self, batch):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self._inner.loss(batch, training=False)
        grads = tape.gradient(loss, variables)
        return loss, self.optimizer.apply_meta_gradient(grads, variables)
