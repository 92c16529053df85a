"""The exact meta-gradient of a window: reverse mode through its L inner steps.

The first-order meta-gradient of Algorithm 1 treats every inner gradient as a
constant. `ExactMetaGradient` differentiates the held-out loss after the
window, L_test(θ_L(φ)), through the whole trajectory instead:

    θ_{t+1}, m_{t+1}, v_{t+1} = U(θ_t, m_t, v_t, g_t(θ_t), φ),  t = 0 … L−1,

where g_t is the training gradient of batch t (with its own dropout masks) and
U is the base optimizer's step scaled by λ(φ). The backward sweep carries the
adjoints (θ̄, m̄, v̄) from t = L to 0:

    ḡ_t, θ̄_t, m̄_t, v̄_t, φ̄ += VJP of U at step t      (elementwise)
    θ̄_t += H_t ḡ_t                                      (Hessian-vector product)

H_t ḡ_t is a gradient of ⟨g_t(θ_t), ḡ_t⟩: two nested tapes around a
`model.stateless_call` that receives the stored dropout-seed state of step t,
so the recomputed gradient is the one the forward pass applied.

Memory: the forward pass keeps (θ, m, v, seeds) at every k-th step
(`state_every`); the backward sweep recomputes the k states of a segment from
its checkpoint. Peak ≈ one backward step (a reverse-over-reverse HVP) +
(⌈L/k⌉ + k) × (trained parameters + slots); k = 1 keeps all L states and
recomputes nothing. With `offload_dir` the stored states go to files
(`keras_metaopt.state_file`) and memory holds only the k states of the
segment being swept (and the adjoints), so k = 1 both recomputes nothing and
holds the fewest. With `hvp_micro_batches` = n the backward step takes the
step's gradient g_t (kept in a file by the forward pass with `offload_dir`,
else computed once more on the whole batch without an outer tape), then adds
H_t ḡ_t as the sum of n micro-batches' products, each micro-batch with its
rows of the full batch's dropout masks (`keras_metaopt.micro_batch`): the
second-order tape holds 1/n of the batch.
The window is a Python loop over compiled single steps (forward, held-out
gradient, backward, write; with micro-batches the backward step is the
update's VJP and then one call per micro-batch), not one graph: one graph of
nested while loops around the nested tapes crashed on its second call
(Grappler's temporary variables in the loop frames), and n micro-batches
unrolled in one graph held far more than one micro-batch's tapes (2 layers of
e5-small, 32 × 128: 3,135 MB with n = 8 against 2,251 MB as a loop).

The step U is `keras_metaopt.functional_adam.adam_step`: Keras's Adam/AdamW `update_step`, written
functionally (bit-identical, tested). Training in `meta_gradient="exact"`
mode runs this same function, in the window and in `MetaOptimizer.apply`.
Adam's 1/(√v + ε) has an unbounded derivative where v = 0 (√v is not
differentiable at 0); with `epsilon_inside_root=True` (the default of the
exact mode) the step is α·m/√(v + ε²) instead, whose derivative is bounded,
and training uses the same formula. For √v ≫ ε the two differ by < ε/√v
relative. With `epsilon_inside_root=False` the step is Keras's bit for bit;
where v = 0 exactly the derivative of √v is taken as 0 (m = 0 there too).
"""

import contextlib

import keras
import tensorflow as tf

from keras_metaopt import layer_recompute, rate_param
from keras_metaopt.functional_adam import adam_slots, adam_step, adam_step_vjp
from keras_metaopt.micro_batch import micro_batch, sliced_dropout
from keras_metaopt.state_file import StateFile


class ExactMetaGradient:
    """Runs one window of L inner steps and returns the exact dL_test/dφ.

    Used by `MetaStep` when its optimizer has `meta_gradient="exact"`; call
    `replica_window` in replica context (it all-reduces gradients over the
    replicas like Keras's `apply`). The window's inner steps *are* the training
    steps: afterwards the model, the base optimizer's slots and step count and
    the dropout-seed states hold θ_L, exactly as after L `apply` calls.

    Args:
        model: The Keras classifier (features → logits).
        optimizer: A built `MetaOptimizer` with `meta_gradient="exact"`.
        loss_fn: `loss_fn(labels, logits, sample_weight=None)` → this
            replica's share of the mean loss (e.g. `TrainStep.loss_from_logits`).
        meta_interval: L, the inner steps of a window.
        state_every: k, keep every k-th state and recompute the rest.
        recompute_layers: in the Hessian-vector products, keep only each
            transformer layer's input and recompute the layer in the backward
            passes (`keras_metaopt.layer_recompute`): less memory, more time,
            the same values to round-off.
        offload_dir: keep the stored states in files under this directory
            instead of memory (`keras_metaopt.state_file.StateFile`): memory
            then holds the k states of one segment instead of ⌈L/k⌉ + k, so
            k = 1 (nothing recomputed) holds the fewest; the same values bit
            for bit. The files are deleted when the window ends.
        hvp_micro_batches: n, compute each Hessian-vector product as the sum
            of n micro-batches' products, one compiled call each
            (`keras_metaopt.micro_batch`): the second-order tape holds one
            micro-batch instead of the batch. The backward step then needs
            the step's gradient before its products: with `offload_dir` the
            forward pass keeps it in a file, otherwise it is computed once
            more on the whole batch (one more forward and backward pass a
            step, without an outer tape). The trajectory is
            the same bit for bit, the meta-gradient the same to round-off
            (the products are summed in another order). The loss must be a
            mean over the batch's examples (as `tf.nn.compute_average_loss`).
    """

    def __init__(
        self,
        model,
        optimizer,
        loss_fn,
        meta_interval,
        state_every=1,
        recompute_layers=False,
        offload_dir=None,
        hvp_micro_batches=1,
    ):
        if hvp_micro_batches < 1:
            raise ValueError(
                f"hvp_micro_batches must be >= 1 (1: the whole batch at once); "
                f"got {hvp_micro_batches}."
            )
        if not 1 <= state_every <= meta_interval:
            raise ValueError(
                f"state_every must be in [1, meta_interval = {meta_interval}]; "
                f"got {state_every}: a window of {meta_interval} steps stores its states "
                f"every k ≤ {meta_interval} steps."
            )
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.meta_interval = meta_interval
        self.state_every = state_every
        self.recompute_layers = recompute_layers
        self.offload_dir = offload_dir
        self.hvp_micro_batches = hvp_micro_batches
        if recompute_layers and not layer_recompute.transformer_layers(model):
            raise ValueError(
                f"recompute_layers: {model.name} has no keras-hub TransformerEncoder "
                "layers, the only layers it recomputes."
            )
        self._compiled = None  # the compiled steps, built on the first run
        opt = optimizer
        # Model trainable variables: index among the optimizer's trained ones,
        # or None (trainable in Keras but in a frozen group: constant here).
        self._active_index = [
            opt.trained_position(v) for v in model.trainable_variables
        ]
        self._seed_index = [
            i
            for i, v in enumerate(model.non_trainable_variables)
            if v.path.endswith("seed_generator_state")
        ]
        base = opt.base_optimizer
        self._decay = [
            base.weight_decay is not None and base._use_weight_decay(v)
            for v in opt.trained_variables
        ]

    # ---- the step, functionally -----------------------------------------
    def read_state(self):
        """(θ, m, v, seeds, iteration) of the optimizer and model, as tensors."""
        opt, base = self.optimizer, self.optimizer.base_optimizer
        theta = [tf.identity(v.value) for v in opt.trained_variables]
        momentums, velocities = adam_slots(base)
        m = [tf.identity(s.value) for s in momentums]
        v = [tf.identity(s.value) for s in velocities]
        nt = self.model.non_trainable_variables
        seeds = [tf.identity(nt[i].value) for i in self._seed_index]
        return theta, m, v, seeds, tf.identity(base.iterations.value)

    def write_state(self, theta, m, v, seeds, steps):
        """Assigns θ, the slots, the seeds; advances both step counters by `steps`."""
        opt, base = self.optimizer, self.optimizer.base_optimizer
        nt = self.model.non_trainable_variables
        momentums, velocities = adam_slots(base)
        targets = (
            list(opt.trained_variables)
            + list(momentums)
            + list(velocities)
            + [nt[i] for i in self._seed_index]
        )
        values = list(theta) + list(m) + list(v) + list(seeds)
        pairs = [(_tf_variable(t), x) for t, x in zip(targets, values)]
        context = tf.distribute.get_replica_context()
        if context is None:
            _assign(tf.distribute.get_strategy(), pairs)
        else:
            context.merge_call(_assign, args=(pairs,))
        for counter in (base.iterations, opt.iterations):
            counter.assign_add(tf.cast(steps, counter.dtype))

    def learning_rate(self, iteration):
        base = self.optimizer.base_optimizer
        schedule = base._learning_rate
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return schedule(iteration)
        return tf.identity(base.learning_rate)

    def gradient(self, theta, seeds, batch):
        """(this replica's loss, its gradient wrt θ, the seeds after the step)."""
        features, labels = batch
        with tf.GradientTape() as tape:
            tape.watch(theta)
            logits, non_trainable = self._call(theta, seeds, features, training=True)
            loss = self.loss_fn(labels, logits)
        grads = tape.gradient(
            loss, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return loss, grads, [non_trainable[i] for i in self._seed_index]

    def heldout_loss(self, theta, heldout):
        """The held-out loss (inference mode) of a batch, or of a list of
        batches (their mean over examples)."""
        if isinstance(heldout, list):
            dtype = theta[0].dtype
            sizes = [tf.cast(tf.shape(y)[0], dtype) for _, y in heldout]
            losses = [tf.cast(self.heldout_loss(theta, b), dtype) for b in heldout]
            return tf.add_n([n * x for n, x in zip(sizes, losses)]) / tf.add_n(sizes)
        features, labels = heldout
        logits, _ = self._call(theta, None, features, training=False)
        return self.loss_fn(labels, logits)

    def update(self, theta, m, v, grads, phi, iteration):
        """U: the scaled base step on every trained variable (no side effects)."""
        opt, base = self.optimizer, self.optimizer.base_optimizer
        lam = rate_param.rate(phi, opt.rates_param)
        lr = self.learning_rate(iteration)
        new_theta, new_m, new_v = [], [], []
        for i, (t, mi, vi, g) in enumerate(zip(theta, m, v, grads)):
            local_step = tf.cast(iteration + 1, t.dtype)
            mi, vi, delta = adam_step(
                g,
                mi,
                vi,
                local_step,
                lr,
                base.beta_1,
                base.beta_2,
                base.epsilon,
                opt.epsilon_inside_root,
            )
            if self._decay[i]:
                decay = tf.cast(base.weight_decay, t.dtype)
                delta = delta + t * decay * tf.cast(lr, t.dtype)
            rate = tf.cast(lam[opt.phi_of_trained[i]], t.dtype)
            new_theta.append(t - rate * delta)
            new_m.append(mi)
            new_v.append(vi)
        return new_theta, new_m, new_v

    def update_vjp(self, theta, m, v, grads, phi, iteration, adjoints):
        """The VJP of `update` in closed form: (θ̄, m̄, v̄, ḡ, φ̄) from the
        adjoints (θ̄', m̄', v̄') of its outputs.

        Variable by variable and without a tape (`adam_step_vjp`), so that
        the backward step keeps no copy of the update's intermediates; the
        same derivative as a tape around `update` (tested).
        """
        opt, base = self.optimizer, self.optimizer.base_optimizer
        lam = rate_param.rate(phi, opt.rates_param)
        lr = self.learning_rate(iteration)
        theta_bar, m_bar, v_bar, grads_bar, rate_bar = [], [], [], [], []
        for i, (t, mi, vi, g, tb, mb, vb) in enumerate(
            zip(theta, m, v, grads, *adjoints)
        ):
            rate = tf.cast(lam[opt.phi_of_trained[i]], t.dtype)
            delta_bar = -rate * tb  # θ' = θ − λ·Δ
            g_bar, mi_bar, vi_bar, delta = adam_step_vjp(
                g,
                mi,
                vi,
                tf.cast(iteration + 1, t.dtype),
                lr,
                base.beta_1,
                base.beta_2,
                base.epsilon,
                opt.epsilon_inside_root,
                delta_bar,
                mb,
                vb,
            )
            t_bar = tb
            if self._decay[i]:  # Δ += θ·wd·lr
                decay = tf.cast(base.weight_decay, t.dtype) * tf.cast(lr, t.dtype)
                delta = delta + t * decay
                t_bar = tb + delta_bar * decay
            rate_bar.append(tf.cast(-tf.reduce_sum(tb * delta), phi.dtype))
            theta_bar.append(t_bar)
            m_bar.append(mi_bar)
            v_bar.append(vi_bar)
            grads_bar.append(g_bar)
        phi_bar = tf.math.unsorted_segment_sum(
            tf.stack(rate_bar), opt.phi_of_trained, num_segments=tf.shape(phi)[0]
        ) * rate_param.rate_derivative(phi, opt.rates_param)
        return theta_bar, m_bar, v_bar, grads_bar, phi_bar

    def step(self, state, batch, phi):
        """One inner step: (state, batch) → (next state, this replica's loss,
        the all-reduced gradient it applied)."""
        theta, m, v, seeds, iteration = state
        loss, grads, seeds = self.gradient(theta, seeds, batch)
        grads = _all_reduce(grads)
        theta, m, v = self.update(theta, m, v, grads, phi, iteration)
        return (theta, m, v, seeds, iteration + 1), loss, grads

    def window_loss(self, phi, batches, heldout):
        """L_test after the window, re-run from the current state (no writes).

        Eager and differentiable in φ (tapes, `ForwardAccumulator`): the
        reference the tests compare the exact meta-gradient with.
        """
        state = self.read_state()
        for batch in batches:
            state, _, _ = self.step(state, batch, phi)
        return _all_reduce([self.heldout_loss(state[0], heldout)])[0]

    # ---- the window -------------------------------------------------------
    def run(self, batches, heldout):
        """Runs the window, writes θ_L and returns the exact dL_test/dφ.

        Call in cross-replica context (eagerly, not inside a `tf.function`):
        the sweep is a Python loop over compiled single steps, so memory is
        the stored states plus one step's graph, whatever L. `batches` is a
        list of L (features, labels) batches (per-replica values under a
        strategy), `heldout` one batch or a list of batches (the
        meta-objective is then their mean). Returns `train_loss` (the mean
        over the window), `heldout_loss`, `meta_gradient` (the full dL/dφ,
        summed over replicas) and `max_adjoint_norm` (the largest ‖dL_test/dθ_t‖).
        """
        if tf.inside_function():
            raise RuntimeError(
                "ExactMetaGradient.run loops over compiled steps in Python: call "
                "it eagerly (MetaStep does), not inside a tf.function."
            )
        if len(batches) != self.meta_interval:
            raise ValueError(
                f"the window has {self.meta_interval} steps; got {len(batches)} batches."
            )
        L, k = self.meta_interval, self.state_every
        compiled = self._compiled_steps()
        phi = tf.identity(self.optimizer.phi.value)
        state = compiled["read"]()
        train_loss = 0.0
        keep_grads = self._keeps_gradients()
        with self._state_store() as stored:
            for t in range(L):
                if t % k == 0:
                    stored.put(t, state)
                state, loss, grads = compiled["forward"](state, batches[t], phi)
                if keep_grads:
                    stored.put(f"g{t}", grads)
                train_loss += loss
            heldout_loss, adjoints, max_adjoint = compiled["heldout"](state, heldout)
            # θ_L goes to the variables now (the sweep reads only stored
            # states), so the window's end state is not held through the sweep.
            compiled["write"](state, L)
            del state
            phi_bar = tf.zeros_like(phi)
            for start in range((L - 1) // k * k, -1, -k):
                end = min(L, start + k)
                segment = [stored.pop(start)]  # recompute the segment's states
                for t in range(start, end - 1):
                    segment.append(compiled["forward"](segment[-1], batches[t], phi)[0])
                for t in range(end - 1, start - 1, -1):
                    grads = stored.pop(f"g{t}") if keep_grads else None
                    adjoints, phi_step, norm = self._backward(
                        segment.pop(), batches[t], phi, adjoints, grads
                    )
                    phi_bar += phi_step
                    max_adjoint = tf.maximum(max_adjoint, norm)
        return {
            "train_loss": train_loss / L,
            "heldout_loss": heldout_loss,
            "meta_gradient": phi_bar,
            "max_adjoint_norm": max_adjoint,
        }

    def _backward(self, state, batch, phi, adjoints, grads):
        """One step of the sweep: (adjoints before it, φ̄ of it, ‖θ̄‖)."""
        compiled = self._compiled_steps()
        if self.hvp_micro_batches == 1:
            return compiled["backward"](state, batch, phi, adjoints)
        (theta_bar, m_bar, v_bar), grads_bar, phi_bar = compiled["update_adjoints"](
            state, batch, phi, adjoints, grads
        )
        for index in range(self.hvp_micro_batches):
            theta_bar, norm = compiled["add_hvp"](
                state, batch, grads_bar, tf.constant(index), theta_bar
            )
        return (theta_bar, m_bar, v_bar), phi_bar, norm

    def _keeps_gradients(self):
        """Whether the forward pass keeps each step's gradient for the backward
        sweep: with micro-batched HVPs and the states in files, reading g_t
        back bit for bit replaces one forward and backward pass a step."""
        return self.hvp_micro_batches > 1 and self.offload_dir is not None

    def _state_store(self):
        """Where the window keeps its stored states: memory, or files."""
        if self.offload_dir is None:
            return _StatesInMemory()
        return StateFile(self.offload_dir, tf.distribute.get_strategy())

    def _compiled_steps(self):
        """The window's single steps, each a `tf.function` run on every replica."""
        if self._compiled is not None:
            return self._compiled
        strategy = tf.distribute.get_strategy()
        loss_dtype = self.model.dtype_policy.variable_dtype  # as TrainStep's

        def on_replicas(fn, *reductions):
            def run(*args):
                out = strategy.run(fn, args=args)
                if not reductions:
                    return out
                return tuple(
                    strategy.reduce(r, x, axis=None) if r else x
                    for r, x in zip(reductions, out)
                )

            return tf.function(run, reduce_retracing=True)

        def forward(state, batch, phi):
            state, loss, grads = self.step(state, batch, phi)
            return state, tf.cast(loss, loss_dtype), grads

        def heldout(state, batches):
            """L_test(θ_L) and the adjoints at the window's end: (θ̄, 0, 0)."""
            theta, m, v = state[:3]
            with tf.GradientTape() as tape:
                tape.watch(theta)
                loss = self.heldout_loss(theta, batches)
            theta_bar = _all_reduce(
                tape.gradient(
                    loss, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
            )
            adjoints = (
                theta_bar,
                [tf.zeros_like(x) for x in m],
                [tf.zeros_like(x) for x in v],
            )
            return tf.cast(loss, loss_dtype), adjoints, tf.linalg.global_norm(theta_bar)

        def backward(state, batch, phi, adjoints):
            theta_bar, m_bar, v_bar = adjoints
            theta_bar, m_bar, v_bar, phi_bar = self._backward_step(
                state, batch, phi, theta_bar, m_bar, v_bar
            )
            # Gradients are all-reduced before the update, so the adjoints and
            # φ̄ are the same on every replica (hence MEAN, not SUM).
            return (theta_bar, m_bar, v_bar), phi_bar, tf.linalg.global_norm(theta_bar)

        self._compiled = {
            "read": on_replicas(self.read_state),
            "forward": on_replicas(forward, None, "SUM", None),
            "heldout": on_replicas(heldout, "SUM", None, "MEAN"),
            "backward": on_replicas(backward, None, "MEAN", "MEAN"),
            "write": on_replicas(
                lambda state, steps: self.write_state(*state[:4], steps)
            ),
        }
        if self.hvp_micro_batches > 1:
            # The update's VJP, then one call per micro-batch: one graph
            # whatever their number, the micro-batches run in turn.
            self._compiled |= {
                "update_adjoints": on_replicas(
                    self._update_adjoints, None, None, "MEAN"
                ),
                "add_hvp": on_replicas(self._add_micro_batch_hvp, None, "MEAN"),
            }
        return self._compiled

    @contextlib.contextmanager
    def _second_order(self):
        """Where an HVP is built: LayerNorm moments with exact second
        derivatives and, with recompute_layers, the layers recomputed (the
        outer gradient runs them again, so it must be inside too)."""
        recompute = _no_recompute
        if self.recompute_layers:
            recompute = layer_recompute.recompute_layers
        with _second_order_moments(), recompute(self.model):
            yield

    def _backward_step(self, state, batch, phi, theta_bar, m_bar, v_bar):
        with self._second_order():
            return self._backward_step_body(state, batch, phi, theta_bar, m_bar, v_bar)

    def _backward_step_body(self, state, batch, phi, theta_bar, m_bar, v_bar):
        theta, m, v, seeds, iteration = state
        with tf.GradientTape() as outer:
            outer.watch(theta)
            _, grads_replica, _ = self.gradient(theta, seeds, batch)
        grads = _all_reduce(grads_replica)
        direct, m_bar, v_bar, grads_bar, phi_bar = self.update_vjp(
            theta, m, v, grads, phi, iteration, (theta_bar, m_bar, v_bar)
        )
        hvp = _all_reduce(
            outer.gradient(
                grads_replica,
                theta,
                output_gradients=grads_bar,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        )
        theta_bar = [a + b for a, b in zip(direct, hvp)]
        return theta_bar, m_bar, v_bar, phi_bar

    def _update_adjoints(self, state, batch, phi, adjoints, grads):
        """The micro-batched step's first part: the update's VJP, with the
        step's all-reduced gradient `grads` (computed here if None, on the
        whole batch, without an outer tape). Returns the adjoints without
        the HVP term, ḡ and φ̄."""
        theta, m, v, seeds, iteration = state
        if grads is None:
            _, grads, _ = self.gradient(theta, seeds, batch)
            grads = _all_reduce(grads)
        direct, m_bar, v_bar, grads_bar, phi_bar = self.update_vjp(
            theta, m, v, grads, phi, iteration, adjoints
        )
        return (direct, m_bar, v_bar), grads_bar, phi_bar

    def _add_micro_batch_hvp(self, state, batch, grads_bar, index, theta_bar):
        """θ̄ + the HVP term of micro-batch `index` (of `hvp_micro_batches`).

        The micro-batch's loss is the mean over its own rows, so its product
        is weighted by its share of the batch's rows; its dropout masks are
        its rows of the full batch's (`sliced_dropout`).
        """
        theta, _, _, seeds, _ = state
        rows = tf.shape(tf.nest.flatten(batch)[0])[0]
        tf.debugging.assert_greater_equal(
            rows,
            self.hvp_micro_batches,
            message=f"hvp_micro_batches = {self.hvp_micro_batches} is more than "
            "the rows of this replica's batch",
        )
        offset, size, part = micro_batch(batch, index, self.hvp_micro_batches)
        with self._second_order():
            with sliced_dropout(rows, offset):
                with tf.GradientTape() as outer:
                    outer.watch(theta)
                    _, grads, _ = self.gradient(theta, seeds, part)
                hvp = outer.gradient(
                    grads,
                    theta,
                    output_gradients=grads_bar,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
        share = tf.cast(size, tf.float64) / tf.cast(rows, tf.float64)
        hvp = _all_reduce([tf.cast(share, h.dtype) * h for h in hvp])
        theta_bar = [a + b for a, b in zip(theta_bar, hvp)]
        return theta_bar, tf.linalg.global_norm(theta_bar)

    def _call(self, theta, seeds, features, training):
        values = [
            v.value if i is None else theta[i]
            for v, i in zip(self.model.trainable_variables, self._active_index)
        ]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        if seeds is not None:
            for i, seed in zip(self._seed_index, seeds):
                non_trainable[i] = seed
        return self.model.stateless_call(
            values, non_trainable, features, training=training
        )


class _StatesInMemory(dict):
    """`StateFile`'s interface on a dict."""

    def put(self, key, state):
        self[key] = state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.clear()


@contextlib.contextmanager
def _no_recompute(model):
    yield 0


@contextlib.contextmanager
def _second_order_moments():
    """LayerNorm moments whose second derivatives are exact, same values.

    `tf.nn.moments` (behind Keras's `layer_normalization`) computes the
    variance around `stop_gradient(mean)`: first derivatives are right (the
    dropped term is zero there), but a Hessian-vector product through a
    LayerNorm misses a term (2e-5 relative on the tiny test BERT, enough to
    move small meta-gradient components by 1e-3). Inside this context the
    backward sweep recomputes the inner gradients with the mean differentiated;
    the forward values are the same ops on the same inputs.
    """
    from keras.src.backend.tensorflow import nn as keras_tf_nn

    original = getattr(keras_tf_nn, "_compute_moments", None)
    if original is None:  # another Keras layout: keep its moments
        yield
        return

    def moments(x, axes, keepdims):
        mean = tf.reduce_mean(x, axes, keepdims=True)
        variance = tf.reduce_mean(
            tf.math.squared_difference(x, mean), axes, keepdims=True
        )
        if not keepdims:
            mean, variance = tf.squeeze(mean, axes), tf.squeeze(variance, axes)
        return mean, variance

    keras_tf_nn._compute_moments = moments
    try:
        yield
    finally:
        keras_tf_nn._compute_moments = original


def _all_reduce(tensors):
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(tensors)
    return context.all_reduce("SUM", list(tensors))


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _assign(strategy, pairs):
    for variable, value in pairs:
        strategy.extended.update(
            variable, lambda var, x: var.assign(x), args=(value,), group=False
        )
