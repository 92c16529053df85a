# ruff: noqa: E731, E741, B023  (a research script, kept as it ran)
"""Tiny keras-hub XLMRobertaBackbone (+ dense head), training=True with dropout 0.1:
nested-tape HVP via model.stateless_call, plain vs each TransformerEncoder
wrapped in checkpoint_v2. usage: exp4_xlmr_hvp.py [function|eager] [big]"""

import contextlib
import os
import resource
import sys
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras.src.backend.common.stateless_scope import StatelessScope, get_stateless_scope

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ckpt.py
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../..")
)  # the repository
from ckpt import checkpoint_v2

from keras_metaopt.exact_meta_gradient import _second_order_moments

mode = sys.argv[1] if len(sys.argv) > 1 else "function"
big = len(sys.argv) > 2 and sys.argv[2] == "big"
variant = sys.argv[3] if len(sys.argv) > 3 else "both"
keras.utils.set_random_seed(0)
if big:
    cfg = dict(
        vocabulary_size=50,
        num_layers=6,
        num_heads=4,
        hidden_dim=128,
        intermediate_dim=512,
        max_sequence_length=128,
    )
    B, T = 32, 128
else:
    cfg = dict(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    B, T = 4, 16
backbone = keras_hub.models.XLMRobertaBackbone(dropout=0.1, **cfg)
tok = keras.Input((None,), dtype="int32", name="token_ids")
pm = keras.Input((None,), dtype="int32", name="padding_mask")
h = backbone({"token_ids": tok, "padding_mask": pm})
model = keras.Model([tok, pm], keras.layers.Dense(3)(h[:, 0]))
rng = np.random.default_rng(0)
ids = tf.constant(rng.integers(3, 50, (B, T)), tf.int32)
mask = tf.constant(np.arange(T)[None] < rng.integers(T // 2, T + 1, (B, 1)), tf.int32)
labels = tf.constant(rng.integers(0, 3, (B,)), tf.int32)
theta = [tf.identity(v.value) for v in model.trainable_variables]
nt0 = [tf.identity(v.value) for v in model.non_trainable_variables]
vec = [tf.random.normal(t.shape, seed=i) for i, t in enumerate(theta)]
encoders = [
    l for l in backbone.layers if isinstance(l, keras_hub.layers.TransformerEncoder)
]
originals = {id(l): l.call for l in encoders}


def wrap(layer):
    """layer.call -> checkpointed call with its weights and seed states as explicit inputs."""
    orig = originals[id(layer)]
    tvars, ntvars = list(layer.trainable_variables), list(layer.non_trainable_variables)

    def call(inputs, padding_mask=None, attention_mask=None, training=None, **kw):
        outer = get_stateless_scope()
        weights = [outer.get_current_value(v) for v in tvars]
        seeds = [outer.get_current_value(v) for v in ntvars]  # dropout seed states
        new_seeds = []

        def f(xs, aux):
            x, *w = xs
            if new_seeds and os.environ.get(
                "WRONG_SEED"
            ):  # negative control: recompute with other masks
                aux = [a + 1 for a in aux]
            with StatelessScope(
                state_mapping=list(zip(tvars, w)) + list(zip(ntvars, aux))
            ) as s:
                y = orig(
                    x,
                    padding_mask=padding_mask,
                    attention_mask=attention_mask,
                    training=training,
                )
            if not new_seeds:  # first (forward) call: remember the advanced seed states
                new_seeds.extend(s.get_current_value(v) for v in ntvars)
            return y

        y = checkpoint_v2(f)([inputs] + weights, seeds)
        for v, s in zip(ntvars, new_seeds):
            v.assign(s)  # recorded in the outer StatelessScope, as the plain call would
        return y

    return call


def set_ckpt(on):
    for l in encoders:
        l.call = wrap(l) if on else originals[id(l)]


def hvp(theta):
    ctx = (
        _second_order_moments()
        if os.environ.get("MOMENTS_INNER_ONLY")
        else contextlib.nullcontext()
    )
    with tf.GradientTape() as outer, ctx:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            logits, nt = model.stateless_call(theta, nt0, [ids, mask], training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    labels, logits, from_logits=True
                )
            )
        g = [
            tf.convert_to_tensor(x)
            for x in inner.gradient(loss, theta, unconnected_gradients="zero")
        ]
    hv = [
        tf.convert_to_tensor(x)
        for x in outer.gradient(
            g, theta, output_gradients=vec, unconnected_gradients="zero"
        )
    ]
    return loss, g, hv, nt


def grad_only(theta):  # a plain fine-tuning gradient, for the ratio
    with tf.GradientTape() as tape:
        tape.watch(theta)
        logits, nt = model.stateless_call(theta, nt0, [ids, mask], training=True)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
        )
    g = [
        tf.convert_to_tensor(x)
        for x in tape.gradient(loss, theta, unconnected_gradients="zero")
    ]
    return loss, g, g, nt


def run(on):
    set_ckpt(on)
    body = grad_only if variant == "grad" else hvp
    fn = tf.function(body, autograph=False) if mode == "function" else body
    if mode == "function" and variant != "both":  # trace first: measure execution only
        with (
            contextlib.nullcontext()
            if os.environ.get("MOMENTS_INNER_ONLY")
            else _second_order_moments()
        ):
            fn = fn.get_concrete_function(theta)
    t0 = time.time()
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with (
        contextlib.nullcontext()
        if os.environ.get("MOMENTS_INNER_ONLY")
        else _second_order_moments()
    ):  # must also cover outer.gradient: the recompute happens there
        out = fn(theta)
        float(out[0])
    r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out, time.time() - t0, r1 - r0, r1


md = lambda a, b: max(
    float(tf.reduce_max(tf.abs(tf.cast(p, tf.float32) - tf.cast(q, tf.float32))))
    for p, q in zip(a, b)
)
if variant == "both":
    (l0, g0, h0, n0), *_ = run(False)
    (l1, g1, h1, n1), *_ = run(True)
    print(
        mode,
        "loss diff",
        float(abs(l0 - l1)),
        "grad maxdiff",
        md(g0, g1),
        "HVP maxdiff",
        md(h0, h1),
        "HVP max|.|",
        max(float(tf.reduce_max(tf.abs(p))) for p in h0),
        "HVP rel err",
        float(
            tf.linalg.global_norm([a - b for a, b in zip(h0, h1)])
            / tf.linalg.global_norm(h0)
        ),
        "new-state maxdiff",
        md(n0, n1),
    )
else:  # memory: one variant per process
    (l, g, hv, n), dt, grow, peak = run(variant == "ckpt")
    print(
        f"{mode} {variant:6s} peak RSS {peak:.0f} MiB (+{grow:.0f} during run) time {dt:.1f}s "
        f"|HVP| {float(tf.linalg.global_norm(hv)):.6e}"
    )
