"""MetaOptimizer and MetaStep against references that share none of their code.

Every expected value here comes from code written in this file: the layer
groups from the variable paths, Adam from its update rule, the first-order
meta-gradient from a tape through a replay of the inner steps (each inner
gradient wrapped in `tf.stop_gradient`, the paper's definition), φ's update
from Adam's first step. `benchmarks/mutation_check.py` shows that these tests catch
a wrong sign, unsummed updates, an unapplied or misassigned rate.

To test the exact meta-gradient, add "exact" to `META_GRADIENTS` and make
`_meta_optimizer` ask for it; `_replay` already differentiates through the
inner gradients for any kind but "first_order".
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import LayerGroups, MetaOptimizer, MetaStep
from keras_metaopt.testing import random_batches, stack, tiny_classifier

# The kinds of meta-gradient under test ("exact" joins when it lands).
META_GRADIENTS = ["first_order", "exact"]

LR = 1e-2  # inner Adam
META_LR = 0.05  # φ's Adam
PHI = [-1.0, 0.5, 2.0]  # λ ≈ 0.27, 0.62, 0.88: a different rate per group
FROZEN = (
    "token_embedding/",
    "position_embedding/",
    "segment_embedding/",
    "embeddings_layer_norm/",
)


@pytest.fixture
def float64():
    """float64 everywhere, φ and the optimizers' slots included."""
    # Keras caches its default dtype policy when the first layer is built, so
    # setting floatx alone leaves later layers float32 once any earlier test
    # has built one: set both.
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous)
    keras.config.set_dtype_policy(previous_policy)


def _meta_optimizer(kind, **kwargs):
    if kind == "exact":  # the replay's hand-written Adam has ε outside the root
        kwargs.update(meta_gradient="exact", epsilon_inside_root=False)
    return MetaOptimizer(**kwargs)


def _group(path):
    """The tiny classifier's group index of a variable path, None if frozen."""
    if path.startswith(FROZEN):
        return None
    match = re.match(r"transformer_layer_(\d+)/", path)
    if match:
        return int(match.group(1))
    assert path.startswith(("pooled_dense/", "logits/")), path
    return 2


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, "float64")))


def _bias_correction(beta):
    # Keras casts β through float32 in its bias correction (`ops.cast` of a
    # Python float); done here too, else float64 runs differ by ~1e-5.
    return float(np.float32(beta))


def _adam(state, grad, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One step of Adam as Kingma & Ba / Keras write it: (Δθ, new state); θ ← θ − Δθ."""
    m, v, t = state
    t += 1
    m = m + (grad - m) * (1 - beta_1)
    v = v + (grad * grad - v) * (1 - beta_2)
    b1, b2 = _bias_correction(beta_1), _bias_correction(beta_2)
    alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return alpha * m / (tf.sqrt(v) + epsilon), (m, v, t)


def _cross_entropy(labels, logits):
    """Mean sparse cross-entropy of logits, written out."""
    log_p = tf.nn.log_softmax(logits)
    return -tf.reduce_mean(tf.gather(log_p, labels, axis=1, batch_dims=1))


def _replay(kind, model, theta, states, phi, train_batches, heldout_batch):
    """L steps of θ ← θ − λ_g(φ)·Adam(∇L_train), then L_test, as a function of φ.

    `theta` and the Adam `states` are the window's start (constants). For
    `kind="first_order"` the inner gradients are wrapped in `tf.stop_gradient`;
    otherwise a tape differentiates through them too (exact). Returns the
    held-out loss, θ_L and the Adam states.
    """
    variables = model.trainable_variables
    groups = [_group(v.path) for v in variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    rates = tf.sigmoid(phi)
    theta, states = list(theta), list(states)
    for features, labels in train_batches:
        with tf.GradientTape() as inner:
            inner.watch(theta)
            logits, _ = model.stateless_call(
                theta, non_trainable, features, training=True
            )
            loss = _cross_entropy(labels, logits)
        grads = inner.gradient(loss, theta)
        for i, group in enumerate(groups):
            if group is None:
                continue
            grad = tf.stop_gradient(grads[i]) if kind == "first_order" else grads[i]
            step, states[i] = _adam(states[i], grad, LR)
            theta[i] = theta[i] - rates[group] * step
    features, labels = heldout_batch
    logits, _ = model.stateless_call(theta, non_trainable, features, training=False)
    return _cross_entropy(labels, logits), theta, states


def _reference(kind, model, theta, states, phi, train_batches, heldout_batch):
    """dL_test/dφ by a tape through the replay; with the loss, θ_L, states."""
    phi = tf.constant(phi, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(phi)
        loss, theta, states = _replay(
            kind, model, theta, states, phi, train_batches, heldout_batch
        )
    return tape.gradient(loss, phi).numpy(), float(loss), theta, states


def _adam_phi(phi, grad, lr=META_LR, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """φ after the first step of Adam on `grad`."""
    m, v = (1 - beta_1) * grad, (1 - beta_2) * grad * grad
    b1, b2 = _bias_correction(beta_1), _bias_correction(beta_2)
    return phi - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + epsilon)


def _tape_steps(model, optimizer, batches):
    """Plain eager steps; returns the gradients each step saw."""
    seen = []
    for features, labels in batches:
        with tf.GradientTape() as tape:
            loss = _cross_entropy(labels, model(features, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        seen.append([tf.convert_to_tensor(g).numpy() for g in grads])
    return seen


def _sums(optimizer, model):
    """The optimizer's Σ Δθ per trained variable of `model`, by path."""
    sums = {}
    for variable in model.trainable_variables:
        if _group(variable.path) is not None:
            index = optimizer._get_variable_index(variable)
            sums[variable.path] = optimizer._update_sums[index].numpy()
    return sums


def test_update_sums_are_the_steps_divided_by_each_groups_rate(float64):
    model = tiny_classifier(dtype="float64")
    theta0 = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer = MetaOptimizer(keras.optimizers.Adam(LR), initial_phi=PHI)
    grads = _tape_steps(model, optimizer, random_batches(5))
    rates = _sigmoid(PHI)
    sums = _sums(optimizer, model)
    assert len(sums) == 36
    moving = 0
    for i, variable in enumerate(model.trainable_variables):
        group = _group(variable.path)
        if group is None:
            np.testing.assert_array_equal(variable.numpy(), theta0[variable.path])
            continue
        moved = theta0[variable.path] - variable.numpy()
        scale = np.abs(moved).max()
        moving += scale > 1e-4
        np.testing.assert_allclose(
            sums[variable.path],
            moved / rates[group],
            rtol=0,
            atol=1e-10 * scale / rates[group],
            err_msg=variable.path,
        )
        # And Σ Δθ is the sum of Adam's own steps on the gradients it saw.
        state, total = (0.0, 0.0, 0), 0.0
        for step_grads in grads:
            step, state = _adam(state, step_grads[i], LR)
            total = total + step.numpy()
        np.testing.assert_allclose(
            sums[variable.path], total, rtol=1e-9, atol=1e-14, err_msg=variable.path
        )
    assert moving >= 34  # not vacuous (attention key biases get no gradient)


@pytest.mark.parametrize("kind", META_GRADIENTS)
def test_meta_step_matches_a_tape_through_the_replayed_window(float64, kind):
    L = 4
    train = random_batches(2 * L, seed=1)
    heldout = random_batches(2, seed=2)
    model = tiny_classifier(dtype="float64")
    theta = [v.value for v in model.trainable_variables]
    states = [(0.0, 0.0, 0)] * len(theta)
    optimizer = _meta_optimizer(
        kind,
        base_optimizer=keras.optimizers.Adam(LR),
        initial_phi=PHI,
        phi_optimizer=keras.optimizers.Adam(META_LR),
    )
    step = MetaStep(model, optimizer, meta_interval=L)
    train_it = iter(tf.data.Dataset.from_tensor_slices(stack(train)))
    heldout_it = iter(tf.data.Dataset.from_tensor_slices(stack(heldout)))

    phi = np.array(PHI)
    for window in range(2):  # the second window starts from the first's end
        expected, loss, theta, states = _reference(
            kind,
            model,
            theta,
            states,
            phi,
            train[window * L : (window + 1) * L],
            heldout[window],
        )
        result = step(train_it, heldout_it)
        got = result["meta_gradient"].numpy()
        assert np.abs(expected).min() > 1e-6  # every group has a signal
        # exact: the replay's tape takes LayerNorm's second derivatives as
        # tf.nn.moments gives them (mean's gradient stopped), the exact sweep
        # exactly; that term is ~1e-4 of the gradient here
        # (tests/keras_metaopt/test_exact_meta_gradient.py checks against float64 FD).
        tolerance = 1e-6 if kind == "first_order" else 1e-3
        assert np.linalg.norm(got - expected) <= tolerance * np.linalg.norm(expected), (
            window,
            got,
            expected,
        )
        assert float(result["heldout_loss"]) == pytest.approx(loss, rel=1e-12)
        for variable, value in zip(model.trainable_variables, theta):
            np.testing.assert_allclose(
                variable.numpy(), value.numpy(), rtol=1e-10, atol=1e-12
            )
        if window == 0:  # φ after Adam's first step on the reference gradient
            phi = _adam_phi(phi, expected)
            atol = 1e-9 if kind == "first_order" else 1e-6  # see `tolerance`
            np.testing.assert_allclose(optimizer.phi.numpy(), phi, rtol=0, atol=atol)
            assert np.abs(phi - PHI).min() > 0.04  # φ moved by ~lr
            phi = optimizer.phi.numpy()  # the next window replays the model's φ


def test_the_exact_replay_differs_from_first_order_only_after_one_step(float64):
    # The reference itself: Adam's first step does not depend on φ, so the two
    # agree for L = 1; later steps see φ through the trajectory.
    model = tiny_classifier(dtype="float64")
    theta = [v.value for v in model.trainable_variables]
    states = [(0.0, 0.0, 0)] * len(theta)
    train, heldout = random_batches(4, seed=1), random_batches(1, seed=2)[0]
    grads = {
        (kind, L): _reference(kind, model, theta, states, PHI, train[:L], heldout)[0]
        for kind in ("first_order", "exact")
        for L in (1, 4)
    }
    one, four = grads["first_order", 1], grads["first_order", 4]
    np.testing.assert_allclose(grads["exact", 1], one, rtol=1e-12)
    assert np.linalg.norm(grads["exact", 4] - four) > 0.05 * np.linalg.norm(four)


def test_phi_update_is_adams_first_step_on_the_held_out_meta_gradient(float64):
    # One inner SGD step on a linear head: Σ Δθ = lr·g_train, so the
    # first-order meta-gradient is −σ′(φ)·lr·⟨g_test, g_train⟩, by hand.
    layer = keras.layers.Dense(3, name="logits")
    layer.build((None, 4))
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(2, 8, 4))
    y_train, y_test = rng.integers(0, 3, (2, 8))
    variables = [layer.kernel, layer.bias]

    def grads(x, y):
        with tf.GradientTape() as tape:
            loss = _cross_entropy(y, layer(x))
        return [g.numpy() for g in tape.gradient(loss, variables)]

    g_train = grads(x_train, y_train)
    optimizer = MetaOptimizer(
        keras.optimizers.SGD(0.5),
        LayerGroups(frozen=()),
        initial_phi=[0.3],
        phi_optimizer=keras.optimizers.Adam(META_LR),
    )
    optimizer.apply(g_train, variables)
    g_test = grads(x_test, y_test)
    dot = sum(float(np.sum(a * b)) for a, b in zip(g_test, g_train))
    rate = _sigmoid(0.3)
    expected_grad = -rate * (1 - rate) * 0.5 * dot
    assert abs(expected_grad) > 1e-3
    got = optimizer.apply_meta_gradient(g_test, variables).numpy()
    np.testing.assert_allclose(got, [expected_grad], rtol=1e-10)
    np.testing.assert_allclose(
        optimizer.phi.numpy(), _adam_phi(np.array([0.3]), expected_grad), atol=1e-12
    )


class _TwoFeatures(keras.Model):
    """logits = good(x₁) + bad(x₂): two layer groups, one feature each."""

    def __init__(self):
        super().__init__(name="two_features")
        self.good = keras.layers.Dense(
            2, use_bias=False, kernel_initializer="zeros", name="good"
        )
        self.bad = keras.layers.Dense(
            2, use_bias=False, kernel_initializer="zeros", name="bad"
        )

    def call(self, x, training=False):
        return self.good(x[:, :1]) + self.bad(x[:, 1:])


def _two_feature_data(n, seed, agree):
    """Label y; x₁ carries y, x₂ carries y (`agree`) or its opposite."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype("int32")
    sign = 2.0 * y - 1.0
    x = np.stack([sign, sign if agree else -sign], axis=1)
    x = (x + 0.5 * rng.normal(size=x.shape)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()


@pytest.mark.parametrize("kind", META_GRADIENTS)
def test_meta_steps_raise_the_rate_that_helps_and_lower_the_one_that_hurts(kind):
    # Training data: both features predict the label. Held-out data: only x₁
    # does, x₂ predicts the opposite. Training `good` lowers the held-out
    # loss, training `bad` raises it: φ_good must rise and φ_bad fall.
    model = _TwoFeatures()
    model(np.zeros((1, 2), "float32"))
    optimizer = _meta_optimizer(
        kind,
        base_optimizer=keras.optimizers.Adam(0.1),
        layer_groups=LayerGroups(rules=[(r"(good|bad)/kernel$", r"\1")], frozen=()),
        initial_phi=0.0,
        phi_optimizer=keras.optimizers.Adam(META_LR),
    )
    optimizer.build(model.trainable_variables)
    assert optimizer.group_names == ["good", "bad"]
    step = MetaStep(model, optimizer, meta_interval=5)
    train = iter(_two_feature_data(400, 0, agree=True))
    heldout = iter(_two_feature_data(400, 1, agree=False))
    for _ in range(3):
        meta_grad = dict(
            zip(optimizer.group_names, step(train, heldout)["meta_gradient"])
        )
        assert meta_grad["good"] < 0 < meta_grad["bad"], meta_grad
    phi = dict(zip(optimizer.group_names, optimizer.phi.numpy()))
    assert phi["good"] > 0.1 and phi["bad"] < -0.1, phi
    rates = optimizer.rates()
    assert rates["good"] > 0.5 > rates["bad"]


def test_reset_base_state_restarts_adam_and_the_window_but_keeps_phi():
    batches = random_batches(6)
    model = tiny_classifier()
    optimizer = MetaOptimizer(
        keras.optimizers.Adam(LR),
        initial_phi=[0.3, -0.2, 0.1],
        phi_optimizer=keras.optimizers.Adam(META_LR),
    )
    _tape_steps(model, optimizer, batches[:2])
    features, labels = random_batches(1, seed=5)[0]
    with tf.GradientTape() as tape:
        loss = _cross_entropy(labels, model(features))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_meta_gradient(grads, model.trainable_variables)
    _tape_steps(model, optimizer, batches[2:3])  # a window in progress
    base = optimizer.base_optimizer
    slots = [v for v in base.variables if v.path.endswith(("momentum", "velocity"))]
    assert int(base.iterations) == 3 and len(slots) == 2 * 36
    assert all(np.abs(s.numpy()).max() > 0 for s in slots)
    assert any(np.abs(s).max() > 0 for s in _sums(optimizer, model).values())
    phi = optimizer.phi.numpy().copy()
    phi_state = [v.numpy().copy() for v in optimizer.phi_optimizer.variables]

    optimizer.reset_base_state()
    assert int(base.iterations) == 0
    assert float(base.learning_rate) == pytest.approx(LR)
    for slot in slots:
        np.testing.assert_array_equal(slot.numpy(), 0.0, err_msg=slot.path)
    for path, value in _sums(optimizer, model).items():
        np.testing.assert_array_equal(value, 0.0, err_msg=path)
    np.testing.assert_array_equal(optimizer.phi.numpy(), phi)
    assert int(optimizer.phi_optimizer.iterations) == 1
    for a, b in zip(optimizer.phi_optimizer.variables, phi_state):
        np.testing.assert_array_equal(a.numpy(), b)

    # From here it trains exactly like a fresh optimizer with the same φ.
    start = [v.numpy().copy() for v in model.trainable_variables]
    _tape_steps(model, optimizer, batches[3:])
    fresh_model = tiny_classifier()
    for variable, value in zip(fresh_model.trainable_variables, start):
        variable.assign(value)
    fresh = MetaOptimizer(keras.optimizers.Adam(LR), initial_phi=phi.tolist())
    _tape_steps(fresh_model, fresh, batches[3:])
    for a, b in zip(model.trainable_variables, fresh_model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    fresh_sums = _sums(fresh, fresh_model)
    for path, value in _sums(optimizer, model).items():
        np.testing.assert_array_equal(value, fresh_sums[path], err_msg=path)


def test_joint_meta_batch_is_the_training_batch_after_the_window():
    # With no held-out iterator the meta batch is the (L+1)-th training batch,
    # drawn after the L inner steps' batches (not between them).
    L = 3
    batches = random_batches(2 * L, seed=4)
    model = tiny_classifier()
    step = MetaStep(model, MetaOptimizer(keras.optimizers.Adam(LR)), L)
    iterator = iter(tf.data.Dataset.from_tensor_slices(stack(batches)))
    result = step(iterator)
    losses = [
        float(_cross_entropy(labels, model(features, training=False)))
        for features, labels in batches
    ]  # φ's update leaves the weights as the inner steps left them
    assert float(result["heldout_loss"]) == pytest.approx(losses[L], rel=1e-6)
    assert min(abs(x - losses[L]) for i, x in enumerate(losses) if i != L) > 1e-5
    np.testing.assert_array_equal(next(iterator)[1], batches[L + 1][1])
