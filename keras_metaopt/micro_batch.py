"""Micro-batches that see the full batch's dropout masks.

A Hessian-vector product of a mean loss is the sum of the micro-batches'
products (each micro-batch's loss weighted by its share of the examples), so
the exact meta-gradient can differentiate the inner gradient one micro-batch
at a time and hold one micro-batch's second-order tape instead of the whole
batch's. That sum is the same function only if every example keeps the
dropout masks it had in the full batch. Keras draws a mask of the shape of
the tensor it drops (batch first), from the layer's seed state: a micro-batch
of b rows would draw a different b-row mask. Inside `sliced_dropout(rows,
offset)` every Keras dropout draws rows [offset, offset + b) of the mask of
the full `rows`-row batch, from the same seed, so each example's mask is the
one the full batch drew, bit for bit (the mask is elementwise:
`where(u >= rate, x / (1 - rate), 0)` row by row, as TensorFlow's
`stateless_dropout` computes it; tested against it).

Only those rows are drawn (`uniform_rows`): TensorFlow's counter-based
generator (Philox, which `alg="auto_select"` runs on CPU and GPU) fills
element i of a draw from counter block i // G (G = 4 values a block for 16-
and 32-bit floats, 2 for float64), so a draw that starts G·s elements in is
the draw from the counter advanced by s. A micro-batch thus costs its own
rows' random numbers, not the whole batch's.
"""

import contextlib

import tensorflow as tf
from keras.src.backend.tensorflow import random as keras_tf_random
from tensorflow.python.ops import gen_stateless_random_ops_v2

__all__ = ["micro_batch", "sliced_dropout", "uniform_rows"]

# Uniform values one Philox block (4 × 32 random bits) gives, by dtype:
# TensorFlow's UniformDistribution (random_distributions.h).
_PER_BLOCK = {
    tf.float16: 4,
    tf.bfloat16: 4,
    tf.float32: 4,
    tf.float64: 2,
}
_AUTO_SELECT = tf.random.Algorithm.AUTO_SELECT.value  # Philox on CPU and GPU


def micro_batch(batch, index, count):
    """Micro-batch `index` of `count` consecutive slices of `batch` (a nest of
    batch-first tensors), as near equal in rows as possible: (its offset, its
    rows, the slice). `index` may be a tensor, so one traced graph serves
    every micro-batch.
    """
    rows = tf.shape(tf.nest.flatten(batch)[0])[0]
    lo, hi = (index * rows) // count, ((index + 1) * rows) // count
    return lo, hi - lo, tf.nest.map_structure(lambda x: x[lo:hi], batch)


def uniform_rows(shape, seed, dtype, offset, count):
    """Rows [offset, offset + count) of `tf.random.stateless_uniform(shape,
    seed, dtype)` (alg="auto_select"), bit for bit, drawing only those rows.

    `shape` is the full draw's shape, batch first (a list or a 1-D tensor);
    `offset` and `count` may be tensors.
    """
    dtype = tf.as_dtype(dtype)
    shape = tf.cast(shape, tf.int64)
    row = tf.reduce_prod(shape[1:])
    start = tf.cast(offset, tf.int64) * row
    per_block = _PER_BLOCK[dtype]
    blocks = start // per_block
    lead = start - blocks * per_block  # values of the first block before `start`
    size = tf.cast(count, tf.int64) * row
    key, counter = gen_stateless_random_ops_v2.stateless_random_get_key_counter(seed)
    flat = gen_stateless_random_ops_v2.stateless_random_uniform_v2(
        tf.reshape(lead + size, [1]),
        key=key,
        counter=_skip(counter, blocks),
        dtype=dtype,
        alg=_AUTO_SELECT,
    )
    out_shape = tf.concat([tf.reshape(tf.cast(count, tf.int64), [1]), shape[1:]], 0)
    return tf.reshape(flat[lead:], out_shape)


def _skip(counter, blocks):
    """Philox's 128-bit counter (two uint64, low first) advanced by `blocks`,
    as its `Skip` does."""
    blocks = tf.cast(blocks, tf.uint64)
    low = counter[0] + blocks
    high = counter[1] + tf.cast(low < counter[0], tf.uint64)
    return tf.stack([low, high])


@contextlib.contextmanager
def sliced_dropout(rows, offset):
    """Within the context, Keras dropout on a b-row tensor keeps rows
    [offset, offset + b) of the mask it would draw for `rows` rows."""
    original = keras_tf_random.dropout

    def dropout(inputs, rate, noise_shape=None, seed=None):
        if rate in (0.0, 1.0) or (noise_shape and noise_shape[0] is not None):
            # No random draw, or one mask for every row: Keras's own answer.
            return original(inputs, rate, noise_shape=noise_shape, seed=seed)
        seed = keras_tf_random._cast_seed(keras_tf_random.draw_seed(seed))
        shape = keras_tf_random._get_concrete_noise_shape(inputs, noise_shape)
        full = tf.concat([[rows], tf.cast(shape, tf.int32)[1:]], axis=0)

        def sampler(shape, dtype):
            return uniform_rows(full, seed, dtype, offset, shape[0])

        return tf.nn.experimental.general_dropout(
            inputs, rate=rate, uniform_sampler=sampler, noise_shape=shape
        )

    keras_tf_random.dropout = dropout
    try:
        yield
    finally:
        keras_tf_random.dropout = original
