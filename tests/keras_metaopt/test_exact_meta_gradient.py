"""The exact meta-gradient: reverse mode through a window of inner steps.

References are independent of the backward sweep: the window re-run eagerly
(`ExactMetaGradient.window_loss`) differentiated by central finite
differences in float64 and by forward mode (`tf.autodiff.ForwardAccumulator`).
"""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import MetaOptimizer, MetaStep, exact_meta_gradient
from keras_metaopt.exact_meta_gradient import ExactMetaGradient
from keras_metaopt.functional_adam import adam_step
from keras_metaopt.testing import random_batches, stack, tiny_classifier
from tests.tolerances import (
    assert_same_trajectory,
    relative_distance,
    trajectory_rtol,
    weights_by_path,
)

PHI = [0.3, -0.2, 0.5]


def _setup(steps, dtype="float32", kind="exact", dropout=0.1, phi=PHI, **kwargs):
    """A tiny classifier with dropout, its optimizer and a MetaStep of `steps`."""
    model = tiny_classifier(dtype=dtype, dropout=dropout)
    optimizer = MetaOptimizer(
        keras.optimizers.Adam(1e-2),
        initial_phi=phi,
        meta_gradient=kind,
        phi_optimizer=keras.optimizers.SGD(0.0),  # φ stays put: compare at PHI
        **kwargs,
    )
    step = MetaStep(model, optimizer, steps)
    optimizer.build(model.trainable_variables)
    return model, optimizer, step


def _data(steps, seed=1):
    train = random_batches(steps, seed=seed)
    heldout = random_batches(1, seed=seed + 100)
    return train, heldout


def _iterators(train, heldout):
    return (
        iter(tf.data.Dataset.from_tensor_slices(stack(train))),
        iter(tf.data.Dataset.from_tensor_slices(stack(heldout))),
    )


def _window(model, optimizer, steps):
    return ExactMetaGradient(
        model,
        optimizer,
        lambda y, logits: tf.nn.compute_average_loss(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        ),
        steps,
    )


def _eager(batches):
    return [(dict(f), tf.constant(y)) for f, y in batches]


def _apply_random_gradients(optimizer, seed=0, steps=4):
    """`steps` applies of random (partly zero) gradients; returns the weights."""
    rng = np.random.default_rng(seed)
    model = tiny_classifier()
    variables = [v for v in model.trainable_variables if "embedding" not in v.path]
    for _ in range(steps):
        grads = [
            rng.normal(size=v.shape).astype("float32") * (rng.random() < 0.8)
            for v in variables
        ]
        optimizer.apply(grads, variables)
    return [v.numpy() for v in variables]


def test_functional_adam_step_is_bit_identical_to_keras_update_step():
    # λ = sigmoid(30) = 1 in float32: the wrapped step is the base step.
    exact = MetaOptimizer(
        keras.optimizers.Adam(1e-2),
        meta_gradient="exact",
        epsilon_inside_root=False,
        initial_phi=30.0,
    )
    keras_adam = keras.optimizers.Adam(1e-2)
    for a, b in zip(
        _apply_random_gradients(keras_adam), _apply_random_gradients(exact)
    ):
        np.testing.assert_array_equal(a, b)
    # AdamW: decay folded into the step the same way in both modes.
    weights = [
        _apply_random_gradients(
            MetaOptimizer(
                keras.optimizers.AdamW(1e-2, weight_decay=0.1),
                meta_gradient=kind,
                initial_phi=0.4,
                **({"epsilon_inside_root": False} if kind == "exact" else {}),
            )
        )
        for kind in ("first_order", "exact")
    ]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_adam_step_epsilon_inside_the_root_has_a_finite_derivative_at_v_zero():
    zero = tf.zeros([3])
    for inside in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(zero)
            _, _, delta = adam_step(
                zero, zero, zero, 1.0, 1e-3, 0.9, 0.999, 1e-7, inside
            )
        grad = tape.gradient(delta, zero).numpy()
        assert np.all(np.isfinite(grad)), (inside, grad)
    # Inside the root: √(v + ε²) ≈ √v + ε where √v ≫ ε.
    g = tf.constant([0.3, -1.0, 2e-3])
    _, _, a = adam_step(g, zero, zero, 1.0, 1e-3, 0.9, 0.999, 1e-7, False)
    _, _, b = adam_step(g, zero, zero, 1.0, 1e-3, 0.9, 0.999, 1e-7, True)
    sqrt_v = np.sqrt(0.001) * np.abs(g.numpy())  # v after one step: (1 − β₂)·g²
    relative = np.abs(a.numpy() - b.numpy()) / np.abs(a.numpy())
    assert np.all(relative <= 1e-7 / sqrt_v * 1.01), (relative, 1e-7 / sqrt_v)
    assert relative[2] > 1e-4  # √v = 6e-5 is not ≫ ε: the two differ visibly


def _train_window(steps, kind, phi=PHI):
    """One window of `steps` inner steps: the step's result, start and end weights."""
    train, heldout = _data(steps)
    kwargs = {"epsilon_inside_root": False} if kind == "exact" else {}
    model, optimizer, step = _setup(steps, kind=kind, phi=phi, **kwargs)
    start = weights_by_path(model)
    result = step(*_iterators(train, heldout))
    result["iterations"] = (
        int(optimizer.iterations.numpy()),
        int(optimizer.base_optimizer.iterations.numpy()),
    )
    return result, start, weights_by_path(model)


@pytest.mark.parametrize("inside_root", [True, False], ids=["inside-root", "keras"])
@pytest.mark.parametrize(
    "base, rates_param",
    [("adam", "sigmoid"), ("adamw", "exp")],
)
def test_the_closed_form_update_vjp_is_the_tape_s(inside_root, base, rates_param):
    model = tiny_classifier(dtype="float64")
    optimizer = MetaOptimizer(
        keras.optimizers.AdamW(1e-2, weight_decay=0.1)
        if base == "adamw"
        else keras.optimizers.Adam(1e-2),
        initial_phi=PHI,
        meta_gradient="exact",
        rates_param=rates_param,
        epsilon_inside_root=inside_root,
    )
    optimizer.build(model.trainable_variables)
    window = _window(model, optimizer, 3)
    rng = np.random.default_rng(0)
    theta = window.read_state()[0]

    def like(x, zeros=0.0, positive=False):
        a = rng.normal(size=x.shape)
        a = np.abs(a) if positive else a
        return tf.constant(a * (rng.random(x.shape) >= zeros), x.dtype)

    # Some v and g zero together: v' = 0, where Keras's √v' has derivative 0.
    grads = [like(t, zeros=0.3) for t in theta]
    v = [tf.where(g == 0, tf.zeros_like(g), like(g, positive=True)) for g in grads]
    m = [like(t) for t in theta]
    adjoints = tuple([like(t) for t in theta] for _ in range(3))
    phi, iteration = tf.identity(optimizer.phi), tf.constant(4, tf.int64)
    with tf.GradientTape() as tape:
        tape.watch([theta, m, v, grads, phi])
        outputs = window.update(theta, m, v, grads, phi, iteration)
    expected = tape.gradient(
        sum(outputs, []),
        [theta, m, v, grads, phi],
        output_gradients=sum(adjoints, []),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    got = window.update_vjp(theta, m, v, grads, phi, iteration, adjoints)
    assert any(window._decay) == (base == "adamw")
    for name, e, g in zip(["θ̄", "m̄", "v̄", "ḡ"], expected[:4], got[:4]):
        for a, b in zip(g, e, strict=True):
            np.testing.assert_allclose(
                a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12, err_msg=name
            )
    np.testing.assert_allclose(got[4].numpy(), expected[4].numpy(), rtol=1e-5)
    assert np.all(got[4].numpy() != 0)


def test_exact_window_trains_exactly_like_apply():
    steps = 3
    first, start, first_weights = _train_window(steps, "first_order")
    exact, _, exact_weights = _train_window(steps, "exact")
    # Same weights, slots' effect, dropout-seed states and step counts. The
    # window's steps are graphs of their own, not TrainStep's loop, and TF
    # fuses and splits a few reductions differently there (and differently
    # again when the thread pool is busy): equal up to float32 rounding of the
    # trajectory, `tests/tolerances.py`. Frozen weights and seed states must
    # be equal exactly.
    rtol = trajectory_rtol(steps)
    assert_same_trajectory(start, first_weights, exact_weights, rtol)
    assert first["iterations"] == exact["iterations"] == (steps, steps)
    # The losses move with the weights: their difference is at most rtol of
    # how far they moved along the window, itself less than the loss.
    for key in ("train_loss", "heldout_loss"):
        np.testing.assert_allclose(float(first[key]), float(exact[key]), rtol=rtol)


def test_a_wrong_rate_fails_the_trajectory_comparison_by_orders_of_magnitude():
    # The check above must still catch a real defect: one group's λ = σ(φ)
    # off by 1 % (φ + 0.01/(1 − σ(φ))) moves its group's endpoint by ~1e-2
    # of the distance travelled: two orders of magnitude beyond rounding.
    steps = 3
    sigma = 1 / (1 + np.exp(-PHI[1]))
    wrong = list(PHI)
    wrong[1] += 0.01 / (1 - sigma)
    _, start, right_weights = _train_window(steps, "exact")
    _, _, wrong_weights = _train_window(steps, "exact", phi=wrong)
    distance = relative_distance(start, right_weights, wrong_weights)
    assert distance > 100 * trajectory_rtol(steps), distance


def test_at_one_step_exact_equals_first_order():
    train, heldout = _data(1)
    grads = {}
    for kind in ("first_order", "exact"):
        kwargs = {"epsilon_inside_root": False} if kind == "exact" else {}
        _, _, step = _setup(1, dtype="float64", kind=kind, **kwargs)
        grads[kind] = step(*_iterators(train, heldout))["meta_gradient"].numpy()
    a, b = grads["first_order"], grads["exact"]
    assert np.linalg.norm(a - b) <= 1e-6 * np.linalg.norm(a)
    assert np.abs(a).min() > 0


@pytest.mark.parametrize("steps", [5, 15])
def test_exact_matches_finite_differences_of_the_rerun_window(steps):
    train, heldout = _data(steps)
    model, optimizer, step = _setup(steps, dtype="float64")
    window = _window(model, optimizer, steps)
    phi = tf.constant(PHI, tf.float64)
    eps = 1e-5
    finite = np.array(
        [
            (
                float(
                    window.window_loss(phi + eps * e, _eager(train), _eager(heldout)[0])
                )
                - float(
                    window.window_loss(phi - eps * e, _eager(train), _eager(heldout)[0])
                )
            )
            / (2 * eps)
            for e in np.eye(3)
        ]
    )
    exact = step(*_iterators(train, heldout))["meta_gradient"].numpy()
    np.testing.assert_allclose(exact, finite, rtol=1e-3)
    assert np.abs(finite).min() > 1e-7  # every component is measured


@pytest.mark.parametrize("steps", [5, 15])
def test_exact_matches_forward_mode_in_float32(steps):
    train, heldout = _data(steps, seed=3)
    model, optimizer, step = _setup(steps)
    window = _window(model, optimizer, steps)
    phi = tf.constant(PHI, tf.float32)
    direction = tf.constant(np.random.default_rng(0).normal(size=3), tf.float32)
    with tf.autodiff.ForwardAccumulator(phi, direction) as accumulator:
        loss = window.window_loss(phi, _eager(train), _eager(heldout)[0])
    jvp = float(accumulator.jvp(loss))
    exact = step(*_iterators(train, heldout))["meta_gradient"].numpy()
    directional = float(np.dot(exact, direction.numpy()))
    assert abs(directional - jvp) <= 1e-4 * abs(jvp), (directional, jvp)


def test_a_small_step_against_the_exact_gradient_lowers_the_rerun_loss():
    steps = 15
    train, heldout = _data(steps, seed=5)
    model, optimizer, step = _setup(steps, dtype="float64")
    window = _window(model, optimizer, steps)
    phi = tf.constant(PHI, tf.float64)
    before = float(window.window_loss(phi, _eager(train), _eager(heldout)[0]))
    grad = step(*_iterators(train, heldout))["meta_gradient"].numpy()
    # Re-run from the same start: a fresh model (the step trained this one).
    model, optimizer, _ = _setup(steps, dtype="float64")
    window = _window(model, optimizer, steps)
    moved = phi - 0.1 * grad / np.linalg.norm(grad)
    after = float(window.window_loss(moved, _eager(train), _eager(heldout)[0]))
    assert after < before


def test_replay_is_deterministic_and_state_checkpointing_changes_nothing():
    steps = 4
    train, heldout = _data(steps)
    results = []
    for k in (1, 1, 3):  # k = 3: a full segment and a partial one
        model, optimizer, _ = _setup(steps)
        step = MetaStep(model, optimizer, steps, state_every=k)
        r = step(*_iterators(train, heldout))
        results.append((r["meta_gradient"].numpy(), [v.numpy() for v in model.weights]))
    for grad, weights in results[1:]:
        np.testing.assert_array_equal(grad, results[0][0])
        for a, b in zip(weights, results[0][1]):
            np.testing.assert_array_equal(a, b)


@pytest.fixture
def written(monkeypatch):
    """(key, the files then in the window's directory) of every state put in a file."""
    puts = []

    class Recording(exact_meta_gradient.StateFile):
        def put(self, key, state):
            super().put(key, state)
            self.wait()  # the write runs on the file's thread
            puts.append((key, sorted(p.name for p in self.path.iterdir())))

    monkeypatch.setattr(exact_meta_gradient, "StateFile", Recording)
    return puts


def test_states_kept_in_files_change_nothing_and_leave_no_file(tmp_path, written):
    steps = 5
    train, heldout = _data(2 * steps)
    results = []
    for k, offload in ((1, None), (1, tmp_path), (2, tmp_path)):
        model, optimizer, _ = _setup(steps)
        step = MetaStep(model, optimizer, steps, state_every=k, offload_dir=offload)
        train_it, heldout_it = _iterators(train, heldout * 2)
        grads = [step(train_it, heldout_it)["meta_gradient"].numpy() for _ in range(2)]
        results.append((grads, [v.numpy() for v in model.weights]))
        assert list(tmp_path.iterdir()) == []  # each window removed its files
    # Two windows with k = 1, then two with k = 2: every k-th state in a file.
    assert [key for key, _ in written] == [0, 1, 2, 3, 4] * 2 + [0, 2, 4] * 2
    assert written[4][1] == ["0.bin", "1.bin", "2.bin", "3.bin", "4.bin"]
    for grads, weights in results[1:]:
        for a, b in zip(grads, results[0][0], strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(weights, results[0][1], strict=True):
            np.testing.assert_array_equal(a, b)


def test_micro_batched_hvps_read_the_kept_gradients_back_bit_for_bit(tmp_path, written):
    # With the states in files the forward pass keeps each g_t too, and the
    # backward sweep reads it instead of recomputing it: the same results.
    steps = 3
    train, heldout = _data(2 * steps, seed=4)
    results = []
    for offload in (None, tmp_path):
        model, optimizer, _ = _setup(steps)
        step = MetaStep(
            model, optimizer, steps, offload_dir=offload, hvp_micro_batches=2
        )
        train_it, heldout_it = _iterators(train, heldout * 2)
        grads = [step(train_it, heldout_it)["meta_gradient"].numpy() for _ in range(2)]
        results.append((grads, [v.numpy() for v in model.weights]))
    assert [key for key, _ in written] == [0, "g0", 1, "g1", 2, "g2"] * 2
    assert written[-1][1] == ["0.bin", "1.bin", "2.bin", "g0.bin", "g1.bin", "g2.bin"]
    assert list(tmp_path.iterdir()) == []
    (grads, weights), (file_grads, file_weights) = results
    for a, b in zip(file_grads, grads, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(file_weights, weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_states_kept_in_files_under_a_mirrored_strategy(mirrored, tmp_path, written):
    steps = 3
    train = tf.data.Dataset.from_tensor_slices(stack(random_batches(steps, 8, seed=1)))
    heldout = tf.data.Dataset.from_tensor_slices(stack(random_batches(1, 8, seed=2)))
    results = []
    # In memory; in files; in files with each replica's HVPs over two
    # micro-batches of 2 rows and the kept gradients read back.
    for offload, micro in ((None, 1), (tmp_path, 1), (tmp_path, 2)):
        with mirrored.scope():
            model = tiny_classifier()
            optimizer = MetaOptimizer(
                keras.optimizers.Adam(1e-2), initial_phi=PHI, meta_gradient="exact"
            )
            step = MetaStep(
                model,
                optimizer,
                steps,
                strategy=mirrored,
                offload_dir=offload,
                hvp_micro_batches=micro,
            )
        result = step(
            iter(mirrored.experimental_distribute_dataset(train.unbatch().batch(8))),
            iter(mirrored.experimental_distribute_dataset(heldout.unbatch().batch(8))),
        )
        results.append((result["meta_gradient"].numpy(), optimizer.phi.numpy()))
    # Two mirrored runs in memory differ by an ulp already (2.5e-7 here), so
    # not bit for bit. (The replicas' states are equal, gradients all-reduced
    # and the seed state mirrored; that each comes back on its own device is
    # test_state_file's.) The micro-batched products are summed in another
    # order.
    for (grad, phi), rtol in zip(results[1:], (1e-6, 1e-5), strict=True):
        np.testing.assert_allclose(grad, results[0][0], rtol=rtol)
        np.testing.assert_allclose(phi, results[0][1], rtol=rtol)
    assert [key for key, _ in written] == [0, 1, 2, 0, "g0", 1, "g1", 2, "g2"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("recompute", [False, True], ids=["", "layers-recomputed"])
def test_mirrored_strategy_on_two_cpus_matches_single_device(mirrored, recompute):
    # recompute: the mirrored run recomputes the layers in its HVPs
    # (keras_metaopt.layer_recompute), the single-device one does not.
    steps = 3
    train = tf.data.Dataset.from_tensor_slices(
        stack(random_batches(2 * steps, 8, seed=1))
    )
    heldout = tf.data.Dataset.from_tensor_slices(stack(random_batches(2, 8, seed=2)))
    outputs = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        with strategy.scope():
            model = tiny_classifier()
            optimizer = MetaOptimizer(
                keras.optimizers.Adam(1e-2), initial_phi=PHI, meta_gradient="exact"
            )
            step = MetaStep(
                model,
                optimizer,
                steps,
                strategy=strategy,
                recompute_layers=recompute and strategy is mirrored,
            )
        results = [
            step(
                iter(
                    strategy.experimental_distribute_dataset(train.unbatch().batch(8))
                ),
                iter(
                    strategy.experimental_distribute_dataset(heldout.unbatch().batch(8))
                ),
            )
            for _ in range(2)
        ]
        outputs.append((model, optimizer, results))
    (m1, o1, r1), (m2, o2, r2) = outputs
    np.testing.assert_allclose(o1.phi.numpy(), o2.phi.numpy(), atol=1e-5)
    for a, b in zip(m1.trainable_variables, m2.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    for x, y in zip(r1, r2):
        np.testing.assert_allclose(
            x["meta_gradient"].numpy(), y["meta_gradient"].numpy(), rtol=1e-4, atol=1e-9
        )
        np.testing.assert_allclose(
            float(x["heldout_loss"]), float(y["heldout_loss"]), rtol=1e-5
        )


def test_meta_clipnorm_bounds_the_phi_step():
    steps = 2
    train, heldout = _data(steps)
    model = tiny_classifier(dtype="float64", dropout=0.1)  # φ in float64 too
    optimizer = MetaOptimizer(
        keras.optimizers.Adam(1e-2),
        initial_phi=PHI,
        meta_gradient="exact",
        phi_optimizer=keras.optimizers.SGD(1.0),
        meta_clipnorm=1e-5,
    )
    result = MetaStep(model, optimizer, steps)(*_iterators(train, heldout))
    assert float(result["meta_gradient_norm"]) > 1e-5  # so clipping acted
    moved = optimizer.phi.numpy() - np.array(PHI)
    np.testing.assert_allclose(np.linalg.norm(moved), 1e-5, rtol=1e-6)
    grad = result["meta_gradient"].numpy()
    np.testing.assert_allclose(
        -moved / np.linalg.norm(moved), grad / np.linalg.norm(grad), rtol=1e-3
    )
    assert float(result["max_adjoint_norm"]) > 0


def test_bad_use_of_the_exact_mode_fails_at_construction():
    with pytest.raises(
        ValueError, match="must be keras.optimizers.Adam or AdamW; got SGD"
    ):
        MetaOptimizer(keras.optimizers.SGD(0.1), meta_gradient="exact")
    with pytest.raises(ValueError, match="does not support `clipnorm`"):
        MetaOptimizer(keras.optimizers.Adam(clipnorm=1.0), meta_gradient="exact")
    with pytest.raises(ValueError, match="mode='fixed' keeps φ constant"):
        MetaOptimizer(mode="fixed", meta_gradient="exact")
    with pytest.raises(ValueError, match="meta_gradient must be one of"):
        MetaOptimizer(meta_gradient="second_order")
    with pytest.raises(ValueError, match="epsilon_inside_root=True is an option"):
        MetaOptimizer(epsilon_inside_root=True)
    model = tiny_classifier()
    exact = MetaOptimizer(meta_gradient="exact")
    with pytest.raises(ValueError, match=r"state_every must be in \[1, 15\].*got 16"):
        MetaStep(model, exact, 15, state_every=16)
    with pytest.raises(ValueError, match="state_every is an option of the exact"):
        MetaStep(model, MetaOptimizer(), 15, state_every=3)
    with pytest.raises(ValueError, match="offload_dir is an option of the exact"):
        MetaStep(model, MetaOptimizer(), 15, offload_dir="states")


def _tracing_counts(windows, **options):
    """{compiled step: its traces} after `windows` windows of 4 steps."""
    steps = 4
    model, optimizer, _ = _setup(steps)
    step = MetaStep(model, optimizer, steps, **options)
    train, heldout = _data(windows * steps)
    train_it, heldout_it = _iterators(train, heldout * windows)
    for _ in range(windows):
        step(train_it, heldout_it)
    return {
        name: fn.experimental_get_tracing_count()
        for name, fn in step._window._compiled.items()
    }


def test_exact_window_steps_trace_once_across_windows():
    # The window is a Python loop over compiled steps: each must be traced
    # once, not per step or per window (a retrace costs more than the step).
    assert _tracing_counts(3, state_every=2) == dict.fromkeys(
        ("read", "forward", "heldout", "backward", "write"), 1
    )
    # Micro-batched: the update's VJP, then one call per micro-batch, the
    # micro-batch's index a tensor: one trace for all of them.
    assert _tracing_counts(2, hvp_micro_batches=3) == {
        "read": 1,
        "forward": 1,
        "heldout": 1,
        "backward": 0,
        "write": 1,
        "update_adjoints": 1,
        "add_hvp": 1,
    }


def test_layer_recomputation_changes_the_meta_gradient_only_by_round_off():
    # keras_metaopt.layer_recompute: each transformer layer recomputed in
    # both backward passes of the HVPs, with its own dropout masks.
    steps = 5
    train, heldout = _data(steps, seed=7)
    results = {}
    for recompute in (False, True):
        model, optimizer, _ = _setup(steps, dtype="float64")
        window = ExactMetaGradient(
            model,
            optimizer,
            lambda y, logits: tf.nn.compute_average_loss(
                keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True
                )
            ),
            steps,
            recompute_layers=recompute,
        )
        r = window.run(_eager(train), _eager(heldout)[0])
        results[recompute] = (r["meta_gradient"].numpy(), model.get_weights())
    (plain, plain_weights), (ours, our_weights) = results[False], results[True]
    assert np.abs(plain).min() > 1e-7
    np.testing.assert_allclose(ours, plain, rtol=1e-9)
    for a, b in zip(our_weights, plain_weights):  # the inner steps are untouched
        np.testing.assert_array_equal(a, b)


def test_layer_recomputation_needs_transformer_layers_and_a_compiled_stateless_call():
    from keras_metaopt.layer_recompute import recompute_layers

    inputs = keras.Input((4,))
    logits = keras.layers.Dense(3, name="logits")(inputs)  # a layer group: head
    dense = keras.Model(inputs, logits, name="dense_only")
    optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2), meta_gradient="exact")
    optimizer.build(dense.trainable_variables)
    with pytest.raises(
        ValueError, match="dense_only has no keras-hub TransformerEncoder"
    ):
        ExactMetaGradient(dense, optimizer, None, 2, recompute_layers=True)
    model = tiny_classifier()
    features, _ = random_batches(1)[0]
    with recompute_layers(model) as count:
        assert count == 2
        with pytest.raises(RuntimeError, match="inside model.stateless_call only"):
            model(features)
    model(features)  # restored on exit


def _micro_batched_run(steps, train, heldout, count, recompute=False, dropout=0.1):
    model, optimizer, _ = _setup(steps, dtype="float64", dropout=dropout)
    window = ExactMetaGradient(
        model,
        optimizer,
        lambda y, logits: tf.nn.compute_average_loss(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        ),
        steps,
        recompute_layers=recompute,
        hvp_micro_batches=count,
    )
    r = window.run(_eager(train), _eager(heldout)[0])
    return r["meta_gradient"].numpy(), model.get_weights()


@pytest.mark.parametrize(
    "count, recompute", [(3, False), (4, True)], ids=["3", "4-layers-recomputed"]
)
def test_micro_batched_hvps_change_the_meta_gradient_only_by_round_off(
    count, recompute
):
    # Batches of 4 rows: micro-batches of 1, 1, 2 rows (3) or of one row (4),
    # each with the rows of the full batch's dropout masks.
    steps = 4
    train, heldout = _data(steps, seed=11)
    plain, plain_weights = _micro_batched_run(steps, train, heldout, 1)
    ours, our_weights = _micro_batched_run(steps, train, heldout, count, recompute)
    assert np.abs(plain).min() > 1e-7
    np.testing.assert_allclose(ours, plain, rtol=1e-9)
    for a, b in zip(our_weights, plain_weights, strict=True):
        np.testing.assert_array_equal(a, b)  # the inner steps are untouched


def test_micro_batches_without_the_full_batch_masks_give_another_meta_gradient(
    monkeypatch,
):
    # The check above can fail: with each micro-batch drawing its own masks,
    # the meta-gradient moves far beyond round-off; without dropout it is the
    # same again.
    steps = 4
    train, heldout = _data(steps, seed=11)
    plain, _ = _micro_batched_run(steps, train, heldout, 1)
    no_dropout, _ = _micro_batched_run(steps, train, heldout, 1, dropout=0.0)
    monkeypatch.setattr(
        exact_meta_gradient, "sliced_dropout", lambda rows, offset: _nothing()
    )
    unaligned, _ = _micro_batched_run(steps, train, heldout, 3)
    gap = np.linalg.norm(unaligned - plain) / np.linalg.norm(plain)
    assert gap > 1e-3, gap
    unaligned, _ = _micro_batched_run(steps, train, heldout, 3, dropout=0.0)
    np.testing.assert_allclose(unaligned, no_dropout, rtol=1e-9)


def _nothing():
    return contextlib.nullcontext()
