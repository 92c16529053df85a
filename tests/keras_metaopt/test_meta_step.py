"""MetaStep: one compiled meta step, single device and MirroredStrategy."""

import keras
import numpy as np
import tensorflow as tf

from keras_metaopt import MetaOptimizer, MetaStep
from keras_metaopt.testing import random_batches, stack, tiny_classifier

L = 3


def _datasets(batch_size):
    train = tf.data.Dataset.from_tensor_slices(stack(random_batches(4 * L, 8, seed=1)))
    heldout = tf.data.Dataset.from_tensor_slices(stack(random_batches(4, 8, seed=2)))
    # Unbatch the stacked batches of 8, then re-batch as asked (global batch).
    return (
        train.unbatch().batch(batch_size, drop_remainder=True),
        heldout.unbatch().batch(batch_size, drop_remainder=True),
    )


def _run(strategy, meta_steps=2):
    with strategy.scope():
        model = tiny_classifier()
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(1e-2), initial_phi=[0.5, -0.5, 0.0]
        )
        step = MetaStep(model, optimizer, meta_interval=L, strategy=strategy)
    train, heldout = _datasets(8)
    train_it = iter(strategy.experimental_distribute_dataset(train))
    heldout_it = iter(strategy.experimental_distribute_dataset(heldout))
    results = [step(train_it, heldout_it) for _ in range(meta_steps)]
    return model, optimizer, step, results


def test_meta_step_updates_phi_every_L_steps_and_traces_once():
    model, optimizer, step, results = _run(tf.distribute.get_strategy(), meta_steps=3)
    assert step._compiled.experimental_get_tracing_count() == 1
    assert int(optimizer.iterations.numpy()) == 3 * L
    assert int(optimizer.phi_optimizer.iterations.numpy()) == 3
    assert not np.allclose(optimizer.phi.numpy(), [0.5, -0.5, 0.0])
    # The update sums were reset by the last meta update.
    assert all(float(np.abs(s.numpy()).max()) == 0.0 for s in optimizer._update_sums)
    for r in results:
        assert np.isfinite(r["train_loss"].numpy()) and r["train_loss"].numpy() > 0
        assert r["meta_gradient"].shape == (3,)

    # A new round reuses the same graph with fresh iterators.
    train, heldout = _datasets(8)
    step(iter(train), iter(heldout))
    assert step._compiled.experimental_get_tracing_count() == 1


def test_heldout_loss_and_meta_gradient_are_the_direct_ones():
    strategy = tf.distribute.get_strategy()
    model, optimizer, step, _ = _run(strategy, meta_steps=1)
    # Replay: after one meta step, evaluate the held-out batch ourselves.
    train, heldout = _datasets(8)
    features, labels = next(iter(heldout.skip(1)))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # Run one more meta step and compare with a manual meta-gradient taken at
    # the same weights, just before its φ update.
    train_it = iter(train.skip(L))
    for _ in range(L):
        x, y = next(train_it)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
    with tf.GradientTape() as tape:
        heldout_loss = loss_fn(labels, model(features, training=False))
    grads = tape.gradient(heldout_loss, model.trainable_variables)
    expected = optimizer.meta_gradient(grads, model.trainable_variables).numpy()

    model2, optimizer2, step2, _ = _run(strategy, meta_steps=1)
    result = step2(iter(train.skip(L)), iter(heldout.skip(1)))
    np.testing.assert_allclose(result["meta_gradient"].numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(
        float(result["heldout_loss"]), float(heldout_loss), rtol=1e-5
    )


def test_mirrored_strategy_on_two_cpus_matches_single_device(mirrored):
    model_1, optimizer_1, _, results_1 = _run(tf.distribute.get_strategy())
    model_2, optimizer_2, _, results_2 = _run(mirrored)
    np.testing.assert_allclose(
        optimizer_1.phi.numpy(), optimizer_2.phi.numpy(), atol=1e-5
    )
    for a, b in zip(model_1.weights, model_2.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    for r1, r2 in zip(results_1, results_2):
        np.testing.assert_allclose(
            r1["heldout_loss"].numpy(), r2["heldout_loss"].numpy(), rtol=1e-5
        )
        np.testing.assert_allclose(
            r1["meta_gradient"].numpy(),
            r2["meta_gradient"].numpy(),
            rtol=1e-4,
            atol=1e-9,
        )


def test_joint_ablation_uses_training_batches():
    model = tiny_classifier()
    optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2))
    step = MetaStep(model, optimizer, meta_interval=L)
    train, _ = _datasets(8)
    iterator = iter(train)
    result = step(iterator)
    assert int(optimizer.iterations.numpy()) == L
    assert int(optimizer.phi_optimizer.iterations.numpy()) == 1
    # The meta batch came from the training stream: L + 1 batches consumed.
    remaining = sum(1 for _ in iterator)
    assert remaining == 4 * L - (L + 1)
    assert np.abs(result["meta_gradient"].numpy()).max() > 0
