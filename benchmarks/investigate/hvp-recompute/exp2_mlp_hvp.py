# ruff: noqa: E731, E741, B023  (a research script, kept as it ran)
"""Exactness: nested-tape HVP of a dropout MLP, plain vs per-layer checkpoint.
usage: exp2_mlp_hvp.py [eager|function]"""

import os
import sys

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ckpt.py
from ckpt import checkpoint, checkpoint_v2

mode = sys.argv[1] if len(sys.argv) > 1 else "eager"
tf.random.set_seed(0)
D, B, L = 16, 8, 4
params = [
    [tf.random.normal([D, D]) * 0.4, tf.random.normal([D]) * 0.1] for _ in range(L)
]
flat = [p for lp in params for p in lp]
x = tf.random.normal([B, D])
y = tf.random.normal([B, D])
v = [tf.random.normal(p.shape) for p in flat]
seeds = [tf.constant([i, 7], tf.int32) for i in range(L)]


def block(xs, seed):  # xs = [h, W, b]; LayerNorm-ish + gelu + dropout(seed)
    h, W, b = xs
    z = h @ W + b
    mu = tf.reduce_mean(z, -1, keepdims=True)
    z = (z - mu) / tf.sqrt(tf.reduce_mean((z - mu) ** 2, -1, keepdims=True) + 1e-5)
    z = tf.nn.gelu(z)
    keep = tf.random.stateless_uniform(tf.shape(z), seed) > 0.1
    return h + tf.where(keep, z / 0.9, 0.0)


def hvp(flat, ck):
    blk = {
        0: block,
        1: checkpoint(block),
        2: checkpoint(block, data_dep=True),
        3: checkpoint_v2(block),
    }[ck]
    with tf.GradientTape() as outer:
        outer.watch(flat)
        with tf.GradientTape() as inner:
            inner.watch(flat)
            h = x
            for i in range(L):
                h = blk([h, flat[2 * i], flat[2 * i + 1]], seeds[i])
            loss = tf.reduce_mean((h - y) ** 2)
        g = inner.gradient(loss, flat)
    return (
        loss,
        g,
        outer.gradient(g, flat, output_gradients=v, unconnected_gradients="zero"),
    )


run = hvp if mode == "eager" else tf.function(hvp, autograph=False)
l0, g0, h0 = run(flat, 0)
md = lambda a, b: max(float(tf.reduce_max(abs(p - q))) for p, q in zip(a, b))
for ck, name in [(1, "checkpoint"), (2, "checkpoint+dep"), (3, "checkpoint_v2")]:
    l1, g1, h1 = run(flat, ck)
    print(
        mode,
        name,
        "loss diff",
        float(abs(l0 - l1)),
        "grad maxdiff",
        md(g0, g1),
        "HVP maxdiff",
        md(h0, h1),
        "HVP max|.|",
        max(float(tf.reduce_max(abs(p))) for p in h0),
    )
# float64 reference for round-off scale
f64 = lambda t: [tf.cast(p, tf.float64) for p in t]
