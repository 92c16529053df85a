# ruff: noqa: E731, E741, B023  (a research script, kept as it ran)
"""Does tf.recompute_grad survive a reverse-over-reverse HVP (nested tapes)?"""

import tensorflow as tf

tf.random.set_seed(0)
D, B, L = 8, 4, 3
Ws = [tf.random.normal([D, D]) * 0.5 for _ in range(L)]
x = tf.random.normal([B, D])
y = tf.random.normal([B, D])
v = [tf.random.normal([D, D]) for _ in range(L)]


def layer(h, W):
    return tf.tanh(h @ W)


def hvp(layer_fn, Ws):
    with tf.GradientTape() as outer:
        outer.watch(Ws)
        with tf.GradientTape() as inner:
            inner.watch(Ws)
            h = x
            for W in Ws:
                h = layer_fn(h, W)
            loss = tf.reduce_mean((h - y) ** 2)
        g = inner.gradient(loss, Ws)
    return g, outer.gradient(
        g, Ws, output_gradients=v, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )


g0, h0 = hvp(layer, Ws)
for mode in ["eager", "tf.function"]:
    rc = tf.recompute_grad(layer)
    fn = (
        (lambda W: hvp(rc, W)) if mode == "eager" else tf.function(lambda W: hvp(rc, W))
    )
    try:
        g1, h1 = fn(Ws)
        print(
            mode,
            "grad diff",
            max(float(tf.reduce_max(abs(a - b))) for a, b in zip(g0, g1)),
            "hvp diff",
            max(float(tf.reduce_max(abs(a - b))) for a, b in zip(h0, h1)),
            "hvp norm",
            float(tf.linalg.global_norm(h0)),
        )
    except Exception as e:
        print(mode, "FAILED:", type(e).__name__, str(e)[:300])
