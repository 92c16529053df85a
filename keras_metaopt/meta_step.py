"""One compiled meta step: L inner steps, then one update of φ."""

import tensorflow as tf

from keras_metaopt.exact_meta_gradient import ExactMetaGradient
from keras_metaopt.train_step import TrainStep


class MetaStep:
    """The inner part of Algorithm 1, compiled once with `tf.function`.

    A call runs `meta_interval` (L) training steps of `model` with
    `optimizer` (a `MetaOptimizer`) on batches from `train_iterator`, then one
    held-out forward/backward on a batch from `heldout_iterator` and the φ
    update from its meta-gradient: first-order by default, or exact (reverse
    mode through the L steps) when the optimizer has `meta_gradient="exact"`
    (then a call is a Python loop over compiled single steps, see
    `ExactMetaGradient.run`; call it eagerly).
    With `heldout_iterator=None` (the "joint" ablation) that batch is the next
    *training* batch instead.

    Losses are averaged with `tf.nn.compute_average_loss`, so the step runs
    unchanged under `tf.distribute` strategies: create the model and the
    optimizer in `strategy.scope()` and pass distributed iterators.

    Args:
        model: A Keras classifier mapping features to logits.
        optimizer: A built or unbuilt `MetaOptimizer`.
        meta_interval: L, the inner steps per φ update (paper: 15; the trainers'
            `--meta-interval`).
        strategy: A `tf.distribute.Strategy`; defaults to the current one.
        state_every: Exact meta-gradient only: keep every k-th inner state
            and recompute the others in the backward sweep (default 1: keep
            all L + 1; memory ~ ⌈L/k⌉ + k states).
        recompute_layers: Exact meta-gradient only: in its Hessian-vector
            products keep only each transformer layer's input and recompute
            the layer in the backward passes (`keras_metaopt.layer_recompute`:
            less memory, more time, the same meta-gradient to round-off).
        offload_dir: Exact meta-gradient only: keep the stored inner states
            in files under this directory instead of memory
            (`keras_metaopt.state_file.StateFile`; memory ~ `state_every`
            states instead of ⌈L/k⌉ + k, the same values bit for bit).
        hvp_micro_batches: Exact meta-gradient only: compute each
            Hessian-vector product over this many micro-batches, one after
            the other (less memory; without `offload_dir` one more forward
            and backward pass a step; the same meta-gradient to round-off;
            `ExactMetaGradient`).

    Example (runs as written, on the tiny test classifier):

    >>> import keras
    >>> import tensorflow as tf
    >>> from keras_metaopt import MetaOptimizer, MetaStep
    >>> from keras_metaopt.testing import random_batches, stack, tiny_classifier
    >>> batches = stack(random_batches(4))
    >>> ds = tf.data.Dataset.from_tensor_slices(batches).repeat()
    >>> optimizer = MetaOptimizer(keras.optimizers.Adam(2e-5))
    >>> step = MetaStep(tiny_classifier(), optimizer, meta_interval=3)
    >>> losses = step(iter(ds), iter(ds))  # 3 inner steps, then one φ update
    >>> sorted(losses)
    ['heldout_loss', 'meta_gradient', 'meta_gradient_norm', 'train_loss']
    >>> int(optimizer.phi_optimizer.iterations)
    1
    """

    def __init__(
        self,
        model,
        optimizer,
        meta_interval=15,
        strategy=None,
        state_every=None,
        recompute_layers=False,
        offload_dir=None,
        hvp_micro_batches=1,
    ):
        if meta_interval < 1:
            raise ValueError(f"meta_interval must be >= 1; got {meta_interval}.")
        self.exact = getattr(optimizer, "meta_gradient_kind", None) == "exact"
        if state_every is not None and not self.exact:
            raise ValueError(
                "state_every is an option of the exact meta-gradient: build the "
                "MetaOptimizer with meta_gradient='exact'."
            )
        if recompute_layers and not self.exact:
            raise ValueError(
                "recompute_layers is an option of the exact meta-gradient: build "
                "the MetaOptimizer with meta_gradient='exact'."
            )
        if offload_dir is not None and not self.exact:
            raise ValueError(
                "offload_dir is an option of the exact meta-gradient: build the "
                "MetaOptimizer with meta_gradient='exact'."
            )
        if hvp_micro_batches != 1 and not self.exact:
            raise ValueError(
                "hvp_micro_batches is an option of the exact meta-gradient: build "
                "the MetaOptimizer with meta_gradient='exact'."
            )
        state_every = 1 if state_every is None else state_every
        if not 1 <= state_every <= meta_interval:
            raise ValueError(
                f"state_every must be in [1, {meta_interval}] (the window "
                f"of meta_interval steps); got {state_every}."
            )
        self.model = model
        self.optimizer = optimizer
        self.meta_interval = meta_interval
        self.state_every = state_every
        self.recompute_layers = recompute_layers
        self.offload_dir = offload_dir
        self.hvp_micro_batches = hvp_micro_batches
        self.strategy = strategy or tf.distribute.get_strategy()
        self._inner = TrainStep(model, optimizer, strategy=self.strategy)
        self._window = None
        self._compiled = None if self.exact else tf.function(self._meta_step)
        self._phi_update = tf.function(self._apply_phi_gradient)

    def __call__(self, train_iterator, heldout_iterator=None):
        """Runs one meta step.

        Returns `{"train_loss", "heldout_loss", "meta_gradient",
        "meta_gradient_norm"}`, plus `"max_adjoint_norm"` (the largest norm of
        dL_test/dθ_t over the window) for the exact meta-gradient.
        """
        if not self.optimizer.built:
            with self.strategy.scope():
                self.optimizer.build(self.model.trainable_variables)
        if self.exact and self._window is None:
            self._window = ExactMetaGradient(
                self.model,
                self.optimizer,
                self._inner.loss_from_logits,
                self.meta_interval,
                self.state_every,
                self.recompute_layers,
                self.offload_dir,
                self.hvp_micro_batches,
            )
        if self.exact:  # a Python loop over compiled steps (memory: see there)
            return self._exact_meta_step(train_iterator, heldout_iterator)
        # Joint: None is passed on, not the training iterator a second time:
        # as two arguments, the graph would not order the meta batch's
        # `next` after the inner steps' (it was drawn after the first one).
        return self._compiled(train_iterator, heldout_iterator)

    def _meta_step(self, train_iterator, heldout_iterator):
        if heldout_iterator is None:
            heldout_iterator = train_iterator
        total = tf.constant(0.0, self._inner.loss_dtype)
        for _ in tf.range(self.meta_interval):
            loss = self.strategy.run(
                self._inner.replica_step, args=(next(train_iterator),)
            )
            total += self.strategy.reduce("SUM", loss, axis=None)
        loss, meta_grad = self.strategy.run(
            self._meta_update, args=(next(heldout_iterator),)
        )
        meta_grad = self.strategy.reduce("SUM", meta_grad, axis=None)
        return {
            "train_loss": total / self.meta_interval,
            "heldout_loss": self.strategy.reduce("SUM", loss, axis=None),
            "meta_gradient": meta_grad,
            "meta_gradient_norm": tf.norm(meta_grad),
        }

    def _meta_update(self, batch):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self._inner.loss(batch, training=False)
        grads = tape.gradient(loss, variables)
        return loss, self.optimizer.apply_meta_gradient(grads, variables)

    def _exact_meta_step(self, train_iterator, heldout_iterator):
        # The window's batches, in the order of the first-order path: L
        # training batches, then the held-out one.
        if heldout_iterator is None:
            heldout_iterator = train_iterator
        batches = [next(train_iterator) for _ in range(self.meta_interval)]
        heldout = next(heldout_iterator)
        with self.strategy.scope():
            result = self._window.run(batches, heldout)
            self._phi_update(result["meta_gradient"])
        result["meta_gradient_norm"] = tf.norm(result["meta_gradient"])
        return result

    def _apply_phi_gradient(self, meta_grad):
        # In replica context φ's optimizer sums the replicas' shares (each
        # made on its replica's device: a broadcast tensor has none to reduce to).
        replicas = self.strategy.num_replicas_in_sync
        self.strategy.run(
            lambda g: self.optimizer.apply_phi_gradient(tf.identity(g) / replicas),
            args=(meta_grad,),
        )
