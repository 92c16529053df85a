"""Micro-batches and their dropout masks (keras_metaopt.micro_batch)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gen_stateless_random_ops_v2

from keras_metaopt.micro_batch import _skip, micro_batch, sliced_dropout, uniform_rows


def _dropped(layer, state, x):
    """`layer(x)` in training mode from the seed state `state`."""
    mapping = list(zip(layer.non_trainable_variables, state))
    with keras.StatelessScope(state_mapping=mapping):
        return np.asarray(tf.cast(layer(x, training=True), tf.float64))


def test_micro_batches_are_consecutive_near_equal_slices():
    batch = ({"ids": tf.reshape(tf.range(20), [10, 2])}, tf.range(10))
    parts = [micro_batch(batch, tf.constant(j), 3) for j in range(3)]
    assert [(int(o), int(n)) for o, n, _ in parts] == [(0, 3), (3, 3), (6, 4)]
    assert [p[1].numpy().tolist() for _, _, p in parts] == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8, 9],
    ]
    assert parts[2][2][0]["ids"].numpy().tolist() == [[12, 13], [14, 15]] + [
        [16, 17],
        [18, 19],
    ]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("noise_shape", [None, (None, 1, None), (1, None, None)])
def test_each_row_keeps_the_mask_it_has_in_the_full_batch(dtype, noise_shape):
    x = tf.cast(tf.random.stateless_normal([10, 3, 7], seed=[1, 2]) + 3, dtype)
    layer = keras.layers.Dropout(0.3, noise_shape=noise_shape, seed=5, dtype=dtype)
    layer.build(x.shape)
    state = [v.value for v in layer.non_trainable_variables]
    full = _dropped(layer, state, x)
    assert 0.1 < np.mean(full == 0) < 0.5  # the layer drops, about at its rate
    for offset, rows, part in (micro_batch(x, j, 3) for j in range(3)):
        with sliced_dropout(10, offset):
            ours = _dropped(layer, state, part)
        # Bit for bit: the same mask and the same scaled values.
        assert ours.tobytes() == full[offset : offset + rows].tobytes()
    if noise_shape is None or noise_shape[0] is None:
        # Drawn for the micro-batch alone, the masks would differ.
        assert not np.array_equal(_dropped(layer, state, x[3:6]), full[3:6])


def test_a_rate_of_zero_keeps_everything_and_the_patch_is_undone():
    from keras.src.backend.tensorflow import random as keras_tf_random

    original = keras_tf_random.dropout
    layer = keras.layers.Dropout(0.0, seed=5)
    x = tf.ones([4, 3])
    layer.build(x.shape)
    with sliced_dropout(8, 4):
        assert keras_tf_random.dropout is not original
        np.testing.assert_array_equal(layer(x, training=True), x)
    assert keras_tf_random.dropout is original


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_uniform_rows_draws_only_the_rows_bit_for_bit(dtype):
    # Rows of 3 x 7 = 21 values: most micro-batches start inside a block of
    # the generator (4 values a block, 2 for float64).
    seed = tf.constant([17, -3], tf.int32)
    full = tf.random.stateless_uniform([10, 3, 7], seed=seed, dtype=dtype).numpy()
    draw = tf.function(uniform_rows)  # offsets as tensors, as in the HVP's graph
    for offset, count in [(0, 10), (0, 1), (1, 2), (3, 4), (5, 5), (9, 1)]:
        rows = draw([10, 3, 7], seed, dtype, tf.constant(offset), tf.constant(count))
        assert rows.shape == (count, 3, 7)
        assert rows.numpy().tobytes() == full[offset : offset + count].tobytes()


def test_the_counter_carries_into_its_high_word():
    # Philox's counter is 128 bits, two uint64 words, low first; a skip that
    # wraps the low word carries into the high one, as the generator's own
    # increments do. 4 float32 values a block: skipping 3 blocks starts at 12.
    key = tf.constant([987654321], tf.uint64)
    counter = tf.constant([2**64 - 2, 5], tf.uint64)
    full = gen_stateless_random_ops_v2.stateless_random_uniform_v2(
        [40], key=key, counter=counter, dtype=tf.float32, alg=3
    )
    skipped = _skip(counter, 3)
    assert skipped.numpy().tolist() == [1, 6]
    tail = gen_stateless_random_ops_v2.stateless_random_uniform_v2(
        [28], key=key, counter=skipped, dtype=tf.float32, alg=3
    )
    np.testing.assert_array_equal(tail.numpy(), full.numpy()[12:])
