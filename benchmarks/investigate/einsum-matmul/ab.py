"""A/B in one process: the e5-small gradient with keras-hub's einsum attention
projections against the same projections as `tensordot` (one MatMul each).

Run from the repository root at 7cc7751 (before `compute_einsum_dense_as_matmul`
existed; the patch below is what it became):

    PYTHONPATH=. python benchmarks/investigate/einsum-matmul/ab.py mixed_bfloat16
    PYTHONPATH=. python benchmarks/investigate/einsum-matmul/ab.py float32

Loss and gradient of a 32 x 48 random batch, `training=False` (no dropout, so
that A and B compute the same function); 4 rounds of 3 calls each, A and B
interleaved. Prints the variables whose gradients differ by more than 1e-3 of
their largest element, and the ratio of the median times.
"""

import sys
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import profile_ops
from trainers.process import set_precision

policy = sys.argv[1]
set_precision(policy)
classifier = profile_ops.load_frozen("presets/multilingual_e5_small", policy)
x = profile_ops.random_batch(classifier, 32, 48)
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
labels = tf.constant(np.arange(32) % 3, tf.int32)


def make():
    @tf.function
    def gradient(x):
        with tf.GradientTape() as tape:
            value = loss(labels, classifier(x, training=False))
        return tape.gradient(value, classifier.trainable_variables)

    return gradient


def tensordot_call(layer):
    inputs, out = layer.equation.split("->")
    a, k = inputs.split(",")

    def call(inputs, training=None):
        m = max(i for i in range(1, min(len(a), len(k)) + 1) if a[-i:] == k[:i])
        assert a[:-m] + k[m:] == out, layer.equation
        y = keras.ops.tensordot(inputs, layer.kernel, axes=m)
        if layer.bias is not None:
            y = y + layer.bias
        if layer.activation is not None:
            y = layer.activation(y)
        return y

    return call


einsum = make()
reference = einsum(x)
patched = 0
for layer in classifier._flatten_layers(include_self=True, recursive=True):
    if isinstance(layer, keras.layers.EinsumDense):
        layer.call = tensordot_call(layer)
        patched += 1
print("patched", patched)
tensordot = make()
changed = tensordot(x)
for variable, p, q in zip(classifier.trainable_variables, reference, changed):
    p, q = tf.cast(p, tf.float32), tf.cast(q, tf.float32)
    largest = float(tf.reduce_max(tf.abs(p)))
    error = float(tf.reduce_max(tf.abs(p - q))) / (1e-30 + largest)
    if error > 1e-3:
        print(variable.path, error, largest)
times = {einsum: [], tensordot: []}
for _ in range(4):
    for function, seconds in times.items():
        function(x)
        start = time.perf_counter()
        for _ in range(3):
            tf.nest.flatten(function(x))[0].numpy()
        seconds.append((time.perf_counter() - start) / 3)
a, b = times[einsum], times[tensordot]
print("einsum", [round(v, 3) for v in a], "tensordot", [round(v, 3) for v in b])
print("ratio of medians", np.median(a) / np.median(b))
