"""Peak RSS of one computation on a bigger dropout MLP, one process per variant.
usage: exp3_mlp_memory.py eager|function grad|hvp|hvp_ckpt|hvp_ckpt_dep"""

import os
import resource
import sys
import time

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ckpt.py
from ckpt import checkpoint, checkpoint_v2

mode, variant = sys.argv[1], sys.argv[2]
tf.random.set_seed(0)
D, B, L = 1024, 2048, 8
flat = []
for _ in range(L):
    flat += [tf.random.normal([D, D]) * 0.03, tf.zeros([D])]
x = tf.random.normal([B, D])
y = tf.random.normal([B, D])
v = [tf.random.normal(p.shape) for p in flat]
seeds = [tf.constant([i, 7], tf.int32) for i in range(L)]


def block(xs, seed):
    h, W, b = xs
    z = h @ W + b
    mu = tf.reduce_mean(z, -1, keepdims=True)
    z = (z - mu) / tf.sqrt(tf.reduce_mean((z - mu) ** 2, -1, keepdims=True) + 1e-5)
    z = tf.nn.gelu(z)
    keep = tf.random.stateless_uniform(tf.shape(z), seed) > 0.1
    return h + tf.where(keep, z / 0.9, 0.0)


def fwd(flat, blk):
    h = x
    for i in range(L):
        h = blk([h, flat[2 * i], flat[2 * i + 1]], seeds[i])
    return tf.reduce_mean((h - y) ** 2)


def grad(flat):
    with tf.GradientTape() as t:
        t.watch(flat)
        loss = fwd(flat, block)
    return [tf.reduce_sum(g) for g in t.gradient(loss, flat)]


def hvp(flat, blk):
    with tf.GradientTape() as outer:
        outer.watch(flat)
        with tf.GradientTape() as inner:
            inner.watch(flat)
            loss = fwd(flat, blk)
        g = inner.gradient(loss, flat)
    h = outer.gradient(g, flat, output_gradients=v, unconnected_gradients="zero")
    return [tf.reduce_sum(p) for p in h]


fns = {
    "grad": grad,
    "hvp": lambda f: hvp(f, block),
    "hvp_ckpt": lambda f: hvp(f, checkpoint(block)),
    "hvp_ckpt_dep": lambda f: hvp(f, checkpoint(block, data_dep=True)),
    "hvp_ckpt_v2": lambda f: hvp(f, checkpoint_v2(block)),
}
fn = fns[variant] if mode == "eager" else tf.function(fns[variant], autograph=False)
if mode == "function":
    fn = fn.get_concrete_function(flat)  # trace before measuring
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.time()
out = fn(flat)
s = float(tf.add_n(out))
dt = time.time() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(
    f"{mode:8s} {variant:13s} peak-base = {peak - base:7.1f} MiB  (base {base:.0f})  "
    f"time {dt:.1f}s  checksum {s:.6e}"
)
