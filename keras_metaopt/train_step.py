"""Compiled training steps shared by every trainer."""

import keras
import tensorflow as tf


def check_precision(model, optimizer):
    """Refuses dtype policies that `optimizer` cannot train `model` under.

    A `MetaOptimizer` trains under "float32", "float64" and "mixed_bfloat16"
    (bfloat16 has float32's exponent range: no loss scaling). Under
    "mixed_float16" gradients need loss scaling, which would scale the steps
    its rates multiply and its meta-gradient; the exact meta-gradient is
    checked against finite differences only where the layers compute in their
    variables' dtype, so it refuses every mixed policy.
    """
    kind = getattr(optimizer, "meta_gradient_kind", None)
    if kind is None:  # a plain Keras optimizer: Keras's own rules apply
        return
    policy = model.dtype_policy
    if policy.compute_dtype == "float16":
        raise ValueError(
            f"MetaOptimizer cannot train a {policy.name} model: float16 needs "
            "loss scaling, which would scale the steps the rates multiply and "
            "the meta-gradient. Use the 'mixed_bfloat16' policy (float32's "
            "exponent range, no loss scaling) or 'float32'."
        )
    if kind == "exact" and policy.compute_dtype != policy.variable_dtype:
        raise ValueError(
            f"meta_gradient='exact' needs a model that computes in its variables' "
            f"dtype (float32 or float64); got the {policy.name} policy. Use "
            "meta_gradient='first_order' under mixed precision."
        )


class TrainStep:
    """Runs `steps_per_call` optimizer steps per call, compiled once.

    Works with any Keras optimizer (plain Adam, a `MetaOptimizer`) and under
    any `tf.distribute` strategy: per-example cross-entropy is averaged with
    `tf.nn.compute_average_loss` (scaled by the global batch), and batches
    come from a (distributed) iterator so varying sequence lengths do not
    retrace.

    Args:
        model: A Keras classifier mapping features to logits.
        optimizer: The optimizer to apply.
        steps_per_call: Optimizer steps per call.
        strategy: A `tf.distribute.Strategy`; defaults to the current one.

    Example (runs as written, on the tiny test classifier):

    >>> import keras
    >>> import tensorflow as tf
    >>> from keras_metaopt import TrainStep
    >>> from keras_metaopt.testing import random_batches, stack, tiny_classifier
    >>> ds = tf.data.Dataset.from_tensor_slices(stack(random_batches(4))).repeat()
    >>> optimizer = keras.optimizers.Adam(2e-5)
    >>> train = TrainStep(tiny_classifier(), optimizer, 2)
    >>> mean_loss = float(train(iter(ds)))  # the mean loss of its 2 steps
    >>> int(optimizer.iterations)
    2
    """

    def __init__(self, model, optimizer, steps_per_call=1, strategy=None):
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1; got {steps_per_call}.")
        check_precision(model, optimizer)
        self.model = model
        self.optimizer = optimizer
        self.steps_per_call = steps_per_call
        self.strategy = strategy or tf.distribute.get_strategy()
        # The loss in the model's variable dtype: a float64 model trains in
        # float64 (mixed precision keeps its float32 loss).
        self.loss_dtype = model.dtype_policy.variable_dtype
        self._cross_entropy = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None, dtype=self.loss_dtype
        )
        self._compiled = tf.function(self._steps)

    def __call__(self, iterator):
        """Runs the steps on batches from `iterator`; returns their mean loss."""
        if not self.optimizer.built:
            with self.strategy.scope():
                self.optimizer.build(self.model.trainable_variables)
        return self._compiled(iterator)

    def _steps(self, iterator):
        total = tf.constant(0.0, self.loss_dtype)
        for _ in tf.range(self.steps_per_call):
            loss = self.strategy.run(self.replica_step, args=(next(iterator),))
            total += self.strategy.reduce("SUM", loss, axis=None)
        return total / self.steps_per_call

    def loss(self, batch, training):
        """This replica's share of the mean cross-entropy of `batch`."""
        features, labels = batch
        return self.loss_from_logits(labels, self.model(features, training=training))

    def loss_from_logits(self, labels, logits):
        """This replica's share of the mean cross-entropy, from logits."""
        return tf.nn.compute_average_loss(self._cross_entropy(labels, logits))

    def replica_step(self, batch):
        """One optimizer step on this replica's `batch` (call in replica context)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.loss(batch, training=True)
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss
