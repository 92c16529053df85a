"""Micro-batches that see the full batch's dropout masks.

A Hessian-vector product of a mean loss is the sum of the micro-batches'
products (each micro-batch's loss weighted by its share of the examples), so
the exact meta-gradient can differentiate the inner gradient one micro-batch
at a time and hold one micro-batch's second-order tape instead of the whole
batch's. That sum is the same function only if every example keeps the
dropout masks it had in the full batch. Keras draws a mask of the shape of
the tensor it drops (batch first), from the layer's seed state: a micro-batch
of b rows would draw a different b-row mask. Inside `sliced_dropout(rows,
offset)` every Keras dropout draws the mask of the full `rows`-row batch from
the same seed and keeps rows [offset, offset + b), so each example's mask is
the one the full batch drew, bit for bit (the mask is elementwise:
`where(u >= rate, x / (1 - rate), 0)` row by row, as TensorFlow's
`stateless_dropout` computes it; tested against it).
"""

import contextlib

import tensorflow as tf
from keras.src.backend.tensorflow import random as keras_tf_random

__all__ = ["micro_batch", "sliced_dropout"]


def micro_batch(batch, index, count):
    """Micro-batch `index` of `count` consecutive slices of `batch` (a nest of
    batch-first tensors), as near equal in rows as possible: (its offset, its
    rows, the slice). `index` may be a tensor, so one traced graph serves
    every micro-batch.
    """
    rows = tf.shape(tf.nest.flatten(batch)[0])[0]
    lo, hi = (index * rows) // count, ((index + 1) * rows) // count
    return lo, hi - lo, tf.nest.map_structure(lambda x: x[lo:hi], batch)


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
            u = tf.random.stateless_uniform(full, seed=seed, dtype=dtype, alg=None)
            return u[offset : offset + shape[0]]

        return tf.nn.experimental.general_dropout(
            inputs, rate=rate, uniform_sampler=sampler, noise_shape=shape
        )

    keras_tf_random.dropout = dropout
    try:
        yield
    finally:
        keras_tf_random.dropout = original
