"""Second-order-safe per-layer recomputation for reverse-over-reverse HVPs.

checkpoint(f)(xs, aux): f(list_of_float_tensors, aux) -> tensor or list.
  * forward: f runs under stop_recording (no tape keeps its intermediates);
  * 1st backward (inner tape): VJP(xs, dys) is ONE custom-gradient op, computed
    by recomputing f under a local tape; the custom gradient makes the outer
    tape differentiate it as one op (inputs xs, dys), not through its internals;
  * 2nd backward (outer tape): recompute f + its VJP under a local tape and
    differentiate that wrt (xs, dys).
aux (e.g. dropout seeds, masks) is closed over: never differentiated, and the
recomputations see the same value, hence the same dropout masks.
`data_dep=True` adds a zero that depends on the incoming cotangent to the
recomputed inputs (as tf.recompute_grad does for XLA) so that graph-mode
Grappler cannot CSE the recomputation with the original forward.
"""

import tensorflow as tf
from tensorflow.python.eager import record

ZERO = tf.UnconnectedGradients.ZERO


def _dep(xs, ct, on):
    if not on:
        return [tf.identity(x) for x in xs]
    e = tf.reduce_max(tf.reshape(ct, [-1])[:1])
    z = tf.where(tf.cast(e, tf.bool) == tf.cast(e, tf.bool), 0.0, float("nan"))
    return [x + tf.cast(z, x.dtype) for x in xs]


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _vjp(f, xs, aux, dys):
    with tf.GradientTape() as t:
        t.watch(xs)
        ys = _as_list(f(xs, aux))
    return t.gradient(ys, xs, output_gradients=dys, unconnected_gradients=ZERO)


def checkpoint(f, data_dep=False):
    def call(xs, aux=None):
        xs = list(xs)
        n = len(xs)

        def vjp_op(*xs_dys):
            @tf.custom_gradient
            def op(*a):
                # NOT under stop_recording: that flag is thread-global and would
                # also blank the local tape inside _vjp (gradients come back 0).
                gx = _vjp(f, _dep(a[:n], a[n], data_dep), aux, list(a[n:]))

                def bwd2(*dgx):
                    with tf.GradientTape() as t:
                        a2 = _dep(a, dgx[0], data_dep)
                        t.watch(a2)
                        g2 = _vjp(f, a2[:n], aux, a2[n:])
                    return t.gradient(
                        g2, a2, output_gradients=list(dgx), unconnected_gradients=ZERO
                    )

                return gx, bwd2

            return op(*xs_dys)

        @tf.custom_gradient
        def fwd(*a):
            with record.stop_recording():
                ys = f(list(a), aux)

            def bwd(*dys):
                return vjp_op(*a, *dys)

            return ys, bwd

        return fwd(*xs)

    return call


# ---- variant 2: symbolic tf.gradients, fully hidden from the outer tapes ----
def _in_graph(fn):
    """Run fn(*tensors) in graph mode: inline if tracing, else via a tf.function."""

    def run(*a):
        if tf.executing_eagerly():
            return tf.function(fn, autograph=False)(*a)
        return fn(*a)

    return run


def checkpoint_v2(f, data_dep=True):
    """Like checkpoint(), but every recomputation runs under stop_recording and
    differentiates with tf.gradients (graph mode), so no outer tape records any
    recomputed intermediate (fixes the eager-mode leak of checkpoint())."""

    def call(xs, aux=None):
        xs = list(xs)
        n = len(xs)

        def vjp_graph(*a):
            a2 = _dep(a, a[n], data_dep)
            ys = _as_list(f(list(a2[:n]), aux))
            return tf.gradients(
                ys, a2[:n], grad_ys=list(a2[n:]), unconnected_gradients="zero"
            )

        def vjp2_graph(*a_dgx):
            a, dgx = a_dgx[: len(a_dgx) - n], a_dgx[len(a_dgx) - n :]
            a2 = _dep(a, dgx[0], data_dep)
            ys = _as_list(f(list(a2[:n]), aux))
            gx = tf.gradients(
                ys, a2[:n], grad_ys=list(a2[n:]), unconnected_gradients="zero"
            )
            return tf.gradients(gx, a2, grad_ys=list(dgx), unconnected_gradients="zero")

        def vjp_op(*xs_dys):
            @tf.custom_gradient
            def op(*a):
                with record.stop_recording():
                    gx = _in_graph(vjp_graph)(*a)

                def bwd2(*dgx):
                    with record.stop_recording():
                        return _in_graph(vjp2_graph)(*a, *dgx)

                return gx, bwd2

            return op(*xs_dys)

        @tf.custom_gradient
        def fwd(*a):
            with record.stop_recording():
                ys = f(list(a), aux)

            def bwd(*dys):
                return vjp_op(*a, *dys)

            return ys, bwd

        return fwd(*xs)

    return call
