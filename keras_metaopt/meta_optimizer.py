"""A Keras optimizer that scales each layer group's update by a learned rate."""

import keras
import tensorflow as tf
from keras import ops

from keras_metaopt import base_step, rate_param
from keras_metaopt.functional_adam import adam_slots, adam_step, check_base_optimizer
from keras_metaopt.layer_groups import LayerGroups
from keras_metaopt.rates_file import read_rates, write_rates

MODES = ("layerwise", "shared", "fixed")
META_GRADIENTS = ("first_order", "exact")


@keras.saving.register_keras_serializable(package="keras_metaopt")
class MetaOptimizer(keras.optimizers.Optimizer):
    """Wraps a base optimizer and scales each layer group's step by λ(φ).

    Each trained variable `θ` of layer group `g` is updated as
    `θ ← θ − λ_g · Δθ_base`, where `Δθ_base` is the step the base optimizer
    (Adam by default) would take and `λ_g = λ(φ_g)`: `sigmoid(φ_g)` (the
    paper's), `2·sigmoid(φ_g)` or `exp(φ_g)` (see `rate_param`). `φ` is a variable
    of this optimizer that the base optimizer never sees; it is learned by
    `apply_meta_gradient` with its own optimizer (Adam, lr 0.05), from the
    held-out gradients at the end of a window of inner steps. During a window
    the optimizer sums `Δθ_base` per variable; the first-order meta-gradient
    (inner-loop gradients treated as constants) is then

        dL_test/dφ_g = −λ′(φ_g) · Σ_{v∈g} ⟨∇_v L_test, Σ_t Δθ_t(v)⟩.

    Args:
        base_optimizer: The `keras.optimizers.Optimizer` whose steps are
            scaled (its learning rate, schedule, clipping and decoupled weight
            decay apply). Defaults to `Adam(2e-5)`. How its step is read, and
            which optimizers are refused (wrappers, Nadam, Muon; EMA,
            gradient accumulation, loss scaling): `keras_metaopt.base_step`.
        layer_groups: A `LayerGroups` mapping variables to groups; frozen
            groups get neither updates nor optimizer slots. Defaults to the
            keras-hub rules with the embeddings frozen.
        mode: `"layerwise"` (one φ per group), `"shared"` (one φ for all
            groups) or `"fixed"` (φ is constant: plain per-layer multipliers,
            no meta-training state).
        initial_phi: A float, one value per group (list or `{group: φ}`), or a
            Keras initializer (name or object), e.g.
            `keras.initializers.RandomNormal(seed=0)`.
        initial_rates: Alternatively, `{group: λ}` with λ in the range of
            `rates_param`, e.g. from `MetaOptimizer.load_rates(path)`.
        phi_optimizer: The optimizer of φ. Defaults to `Adam(0.05)`.
        rates_param: How λ depends on φ: `"sigmoid"` (λ in (0, 1), the
            paper's), `"scaled-sigmoid"` (2·sigmoid, λ in (0, 2)) or `"exp"`
            (λ in (0, 4], φ projected onto φ ≤ log 4 after each φ update).
            With the last two, φ = 0 is plain fine-tuning (λ = 1).
        meta_gradient: `"first_order"` (the paper's; inner gradients are
            constants, computed here from the update sums) or `"exact"`
            (reverse mode through the whole window, second order: run by
            `MetaStep`, see `keras_metaopt.exact_meta_gradient`). `"exact"`
            needs Adam or AdamW as the base optimizer, without clipping.
        epsilon_inside_root: Adam's denominator as √(v + ε²) instead of
            Keras's √v + ε, in training and in its derivative (bounded where
            v ≈ 0). Defaults to True with `meta_gradient="exact"`; False
            keeps Keras's Adam bit for bit. Only the exact mode accepts True.
        meta_clipnorm: If set, each meta-gradient dL/dφ (summed over
            replicas) is clipped to this norm before φ's optimizer sees it.

    Example (runs as written, on the tiny test classifier):

    >>> import os, tempfile
    >>> import keras
    >>> import tensorflow as tf
    >>> from keras_metaopt import MetaOptimizer
    >>> from keras_metaopt.testing import random_batches, tiny_classifier, train
    >>> model = tiny_classifier()
    >>> optimizer = MetaOptimizer(keras.optimizers.Adam(2e-5))  # φ = 0: λ = 0.5
    >>> train(model, optimizer, random_batches(2))  # L = 2 inner `apply` steps
    >>> features, labels = random_batches(1, seed=1)[0]  # a held-out batch
    >>> with tf.GradientTape() as tape:
    ...     logits = model(features, training=False)
    ...     loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
    ...         labels, logits, from_logits=True))
    >>> variables = model.trainable_variables
    >>> _ = optimizer.apply_meta_gradient(tape.gradient(loss, variables), variables)
    >>> sorted(optimizer.rates())  # the embeddings are frozen by default
    ['head', 'transformer_layer_0', 'transformer_layer_1']
    >>> path = os.path.join(tempfile.mkdtemp(), "rates.json")
    >>> optimizer.save_rates(path)
    >>> fixed = MetaOptimizer(
    ...     keras.optimizers.Adam(2e-5),
    ...     mode="fixed",
    ...     initial_rates=MetaOptimizer.load_rates(path),
    ... )
    """

    def __init__(
        self,
        base_optimizer=None,
        layer_groups=None,
        mode="layerwise",
        initial_phi=0.0,
        initial_rates=None,
        phi_optimizer=None,
        rates_param="sigmoid",
        meta_gradient="first_order",
        epsilon_inside_root=None,
        meta_clipnorm=None,
        name="meta_optimizer",
    ):
        super().__init__(learning_rate=0.0, name=name)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
        base_optimizer = base_optimizer or keras.optimizers.Adam(2e-5)
        base_step.check_wrappable(base_optimizer)
        if meta_gradient not in META_GRADIENTS:
            raise ValueError(
                f"meta_gradient must be one of {META_GRADIENTS}; got {meta_gradient!r}."
            )
        if meta_gradient == "exact":
            if mode == "fixed":
                raise ValueError(
                    "mode='fixed' keeps φ constant: it has no meta-gradient, "
                    "so meta_gradient='exact' does not apply."
                )
            check_base_optimizer(base_optimizer)
        if epsilon_inside_root is None:
            epsilon_inside_root = meta_gradient == "exact"
        elif epsilon_inside_root and meta_gradient != "exact":
            raise ValueError(
                "epsilon_inside_root=True is an option of meta_gradient='exact'."
            )
        if meta_clipnorm is not None and not meta_clipnorm > 0:
            raise ValueError(f"meta_clipnorm must be > 0; got {meta_clipnorm!r}.")
        if initial_rates is not None and initial_phi not in (None, 0.0):
            raise ValueError("Give initial_phi or initial_rates, not both.")
        self.base_optimizer = base_optimizer
        self.layer_groups = layer_groups or LayerGroups()
        self.mode = mode
        self.initial_phi = initial_phi
        self.initial_rates = initial_rates
        self.phi_optimizer = phi_optimizer or keras.optimizers.Adam(0.05)
        self.rates_param = rate_param.check(rates_param)
        self.meta_gradient_kind = meta_gradient
        self.epsilon_inside_root = bool(epsilon_inside_root)
        self.meta_clipnorm = meta_clipnorm

    def build(self, var_list):
        """Creates φ, the base optimizer's slots and the update sums.

        Only variables of non-frozen groups are kept; a variable that no rule
        matches is an error.
        """
        if self.built:
            return
        names, active, groups = self.layer_groups.assign(list(var_list))
        super().build(active)
        self.group_names = names
        n_phi = 1 if self.mode == "shared" else len(names)
        self._phi_index = {
            self._var_key(v): 0 if self.mode == "shared" else g
            for v, g in zip(active, groups)
        }
        self._segment_ids = [self._phi_index[self._var_key(v)] for v in active]
        self._positions = {self._var_key(v): i for i, v in enumerate(active)}
        # φ in the trained variables' precision (float64 models: float64 φ).
        self.phi = self.add_variable(
            shape=(n_phi,),
            initializer=self._phi_initializer(),
            dtype=active[0].dtype,
            name="phi",
        )
        if self.mode != "fixed":
            # Zeroed from replica context after each meta update, hence
            # `only_first_replica` (all replicas hold the same sums).
            self._update_sums = [
                self.add_variable(
                    shape=v.shape,
                    dtype=v.dtype,
                    aggregation="only_first_replica",
                    name=f"update_sum_{v.name}",
                )
                for v in active
            ]
            self.phi_optimizer.build([self.phi])
        self.base_optimizer.build(active)

    def _phi_initializer(self):
        n_phi = 1 if self.mode == "shared" else len(self.group_names)
        value = self.initial_phi
        if self.initial_rates is not None:
            value = {
                g: rate_param.phi_of_rate(r, self.rates_param)
                for g, r in self.initial_rates.items()
            }
        if isinstance(value, dict):
            missing = [g for g in self.group_names if g not in value]
            extra = [g for g in value if g not in self.group_names]
            if missing or extra:
                raise ValueError(
                    f"φ/rates do not match the model's layer groups: missing "
                    f"{missing}, unknown {extra}; the trained groups are "
                    f"{self.group_names}."
                )
            value = [float(value[g]) for g in self.group_names]
            if self.mode == "shared":
                if len(set(value)) != 1:
                    raise ValueError(
                        "mode='shared' needs one rate for every group; got "
                        f"{dict(zip(self.group_names, value))}."
                    )
                value = value[:1]
        if isinstance(value, (int, float)):
            return keras.initializers.Constant(float(value))
        if isinstance(value, (str, keras.initializers.Initializer)):
            return keras.initializers.get(value)
        value = [float(x) for x in value]
        if len(value) != n_phi:
            raise ValueError(
                f"initial φ has {len(value)} values but this model has {n_phi} "
                f"rate(s) in mode '{self.mode}' (groups: {self.group_names})."
            )
        return lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype)

    def apply(self, grads, trainable_variables=None):
        """Applies one scaled step; frozen-group variables are skipped."""
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(trainable_variables)
                self.built = True
            kept = [
                (g, v)
                for g, v in zip(grads, trainable_variables)
                if self._var_key(v) in self._phi_index
            ]
            grads = [g for g, _ in kept]
            trainable_variables = [v for _, v in kept]
        super().apply(grads, trainable_variables)
        self.base_optimizer.iterations.assign_add(1)

    def update_step(self, gradient, variable, learning_rate):
        update = self._base_update(gradient, variable, learning_rate)
        rate = self._rate(self.phi[self._phi_index[self._var_key(variable)]])
        self.assign_sub(variable, ops.cast(rate, variable.dtype) * update)
        if self.mode != "fixed":
            self.assign_add(
                self._update_sums[self._get_variable_index(variable)], update
            )

    def _base_update(self, gradient, variable, learning_rate):
        """Returns the base optimizer's step Δθ for `variable`, unapplied.

        The base optimizer's slots are updated; decoupled weight decay is
        folded into Δθ.
        """
        base = self.base_optimizer
        start = ops.convert_to_tensor(variable)
        if self.meta_gradient_kind == "exact":
            update = self._functional_adam_update(gradient, variable, learning_rate)
        else:
            update = base_step.captured_update(
                base, gradient, variable, learning_rate, start
            )
        decay = base_step.weight_decay_step(base, variable, learning_rate, start)
        return update if decay is None else update + decay

    def _functional_adam_update(self, gradient, variable, learning_rate):
        """Adam's step as `adam_step` computes it: the function the exact
        meta-gradient differentiates (bit-identical to Keras's `update_step`
        unless `epsilon_inside_root`)."""
        base = self.base_optimizer
        index = base._get_variable_index(variable)
        momentums, velocities = adam_slots(base)
        m, v = momentums[index], velocities[index]
        m_new, v_new, update = adam_step(
            gradient,
            ops.convert_to_tensor(m),
            ops.convert_to_tensor(v),
            ops.cast(base.iterations + 1, variable.dtype),
            learning_rate,
            base.beta_1,
            base.beta_2,
            base.epsilon,
            self.epsilon_inside_root,
        )
        base.assign(m, m_new)
        base.assign(v, v_new)
        return update

    def meta_gradient(self, grads, variables=None):
        """First-order dL/dφ from held-out gradients, over the current window.

        Args:
            grads: Gradients of the held-out loss, one per variable.
            variables: The variables of `grads` (e.g. the model's trainable
                variables; frozen ones are ignored). Defaults to the trained
                variables in build order.
        """
        self._check_meta_trainable()
        variables = self._trainable_variables if variables is None else variables
        dots, segments = [], []
        for grad, variable in zip(grads, variables):
            key = self._var_key(variable)
            if grad is None or key not in self._phi_index:
                continue
            update_sum = self._update_sums[self._get_variable_index(variable)]
            grad = ops.cast(tf.convert_to_tensor(grad), update_sum.dtype)
            dots.append(ops.cast(ops.sum(grad * update_sum), self.phi.dtype))
            segments.append(self._phi_index[key])
        contribution = tf.math.unsorted_segment_sum(
            tf.stack(dots), segments, num_segments=self.phi.shape[0]
        )
        return -rate_param.rate_derivative(self.phi, self.rates_param) * contribution

    def apply_meta_gradient(self, grads, variables=None):
        """Updates φ from held-out gradients and starts a new window.

        Under a `tf.distribute` strategy call it in replica context with the
        per-replica gradients of a loss scaled by the global batch size: the
        φ optimizer sums the per-replica meta-gradients.

        Returns:
            The meta-gradient dL/dφ that was applied.
        """
        meta_grad = self.meta_gradient(grads, variables)
        self.apply_phi_gradient(meta_grad)
        self.reset_update_sums()
        return meta_grad

    def apply_phi_gradient(self, meta_grad):
        """One step of φ's optimizer on dL/dφ, then the projection of `exp` rates.

        In replica context `meta_grad` is this replica's share: φ's optimizer
        sums the shares (clipping, if set, acts on the sum).
        """
        if self.meta_clipnorm is not None:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            context = tf.distribute.get_replica_context()
            total = meta_grad
            if context is not None and replicas > 1:
                total = context.all_reduce("SUM", meta_grad)
            total = tf.clip_by_norm(total, ops.cast(self.meta_clipnorm, total.dtype))
            meta_grad = total / replicas
        self.phi_optimizer.apply([meta_grad], [self.phi])
        top = rate_param.max_phi(self.rates_param)
        if top is not None:
            self.phi.assign(ops.minimum(self.phi, ops.cast(top, self.phi.dtype)))

    def _rate(self, phi):
        return rate_param.rate(phi, self.rates_param)

    def reset_update_sums(self):
        """Zeroes Σ Δθ_base (start of a new window of inner steps)."""
        self._check_meta_trainable()
        for update_sum in self._update_sums:
            update_sum.assign(ops.zeros_like(update_sum))

    def reset_base_state(self):
        """Restarts the base optimizer (slots and step count) and the window.

        φ and its optimizer are kept: used to re-initialise the learner at the
        start of a meta-training round.
        """
        base = self.base_optimizer
        keep = {id(base.iterations), id(getattr(base, "_learning_rate", None))}
        for variable in base.variables:
            if id(variable) not in keep:
                variable.assign(ops.zeros_like(variable))
        base.iterations.assign(0)
        if self.mode != "fixed":
            self.reset_update_sums()

    def _check_meta_trainable(self):
        if not self.built:
            raise ValueError("The optimizer is not built yet: call build() first.")
        if self.mode == "fixed":
            raise ValueError("mode='fixed' keeps φ constant: it has no meta-gradient.")

    def rates(self):
        """Returns `{group: λ}` as Python floats (the optimizer must be built)."""
        if not self.built:
            raise ValueError("The optimizer is not built yet: call build() first.")
        lam = ops.convert_to_numpy(self._rate(self.phi)).tolist()
        if self.mode == "shared":
            return {g: lam[0] for g in self.group_names}
        return dict(zip(self.group_names, lam))

    def save_rates(self, path):
        """Writes the learned rates to a small JSON file (group → λ;
        `keras_metaopt.rates_file`)."""
        phi = ops.convert_to_numpy(self.phi).tolist()
        if self.mode == "shared":
            phi = phi * len(self.group_names)
        write_rates(
            path,
            self.rates(),
            mode=self.mode,
            rates_param=self.rates_param,
            phi=dict(zip(self.group_names, phi)),
        )

    @staticmethod
    def load_rates(path):
        """Reads `{group: λ}` from a file written by `save_rates`
        (`keras_metaopt.rates_file.read_rates`, which checks it)."""
        return read_rates(path).rates

    # ---- read-only views for the exact meta-gradient ----------------------
    @property
    def trained_variables(self):
        """The variables this optimizer trains (the non-frozen groups'), in
        the order of its slots."""
        return tuple(self._trainable_variables)

    def trained_position(self, variable):
        """The index of `variable` in `trained_variables`, or None when this
        optimizer does not train it (a frozen group's)."""
        return self._positions.get(self._var_key(variable))

    @property
    def phi_of_trained(self):
        """For each of `trained_variables`, the index of its φ (its group's;
        0 for every variable in shared mode)."""
        return tuple(self._segment_ids)

    @property
    def variables(self):
        return (
            self._variables[:]
            + self.base_optimizer.variables
            + self.phi_optimizer.variables
        )

    @property
    def learning_rate(self):
        return self.base_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.base_optimizer.learning_rate = learning_rate

    def _clip_gradients(self, grads):
        return base_step.clip_gradients(self.base_optimizer, grads)

    def get_config(self):
        initial_phi = self.initial_phi
        if isinstance(initial_phi, keras.initializers.Initializer):
            initial_phi = keras.saving.serialize_keras_object(initial_phi)
        return {
            "name": self.name,
            "base_optimizer": keras.saving.serialize_keras_object(self.base_optimizer),
            "layer_groups": keras.saving.serialize_keras_object(self.layer_groups),
            "mode": self.mode,
            "initial_phi": initial_phi,
            "initial_rates": self.initial_rates,
            "phi_optimizer": keras.saving.serialize_keras_object(self.phi_optimizer),
            "rates_param": self.rates_param,
            "meta_gradient": self.meta_gradient_kind,
            "epsilon_inside_root": self.epsilon_inside_root,
            "meta_clipnorm": self.meta_clipnorm,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("base_optimizer", "layer_groups", "phi_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        if isinstance(config.get("initial_phi"), dict) and "class_name" in config.get(
            "initial_phi"
        ):
            config["initial_phi"] = keras.saving.deserialize_keras_object(
                config["initial_phi"], custom_objects=custom_objects
            )
        return cls(**config)
