"""Per-layer recomputation that survives a second derivative.

The exact meta-gradient's Hessian-vector product differentiates a gradient:
two nested tapes around the model, the outer one recording everything the
inner gradient computes, so the activations of every layer are held twice
(3.13× a plain step's peak memory on e5-small). `recompute_layers(model)`
makes each transformer layer of `model` keep only its input: its forward pass
runs unrecorded, its gradient (the inner tape) is one op that recomputes the
layer, and that op's gradient (the outer tape) recomputes the layer and its
gradient again. Values are the same ops on the same inputs, with the same
dropout masks (the layer's seed states are passed in, not drawn again).

`tf.recompute_grad` cannot do this: its gradient raises when differentiated
("recompute_grad tried to transpose grad"). The recomputations differentiate
with `tf.gradients` in graph mode under a thread-wide stop of recording (a
local `GradientTape` would be stopped too, or would be recorded by the outer
tape and save nothing), and depend on the incoming cotangent so that Grappler
cannot merge them back into the forward pass (what `tf.recompute_grad` does
for XLA). Found and measured in `benchmarks/investigate/hvp-recompute/`.

Only inside a `model.stateless_call` (the exact path calls the model that
way) and inside a `tf.function`.
"""

import contextlib

import keras
import keras_hub
import tensorflow as tf
from keras.src.backend.common.stateless_scope import get_stateless_scope
from tensorflow.python.eager import record  # thread-wide stop_recording

__all__ = ["recompute_layers", "transformer_layers"]

_ZERO = tf.UnconnectedGradients.ZERO


def transformer_layers(model):
    """The keras-hub `TransformerEncoder` layers of `model`, the ones that
    `recompute_layers` recomputes."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras_hub.layers.TransformerEncoder)
    ]


@contextlib.contextmanager
def recompute_layers(model):
    """Within the context, every `TransformerEncoder` of `model` recomputes
    its forward pass in its backward passes (first and second order)."""
    layers = transformer_layers(model)
    originals = [layer.call for layer in layers]
    try:
        for layer, call in zip(layers, originals):
            layer.call = _recomputed_call(layer, call)
        yield len(layers)
    finally:
        for layer, call in zip(layers, originals):
            layer.call = call


def _recomputed_call(layer, call):
    weights_of, states_of = (
        list(layer.trainable_variables),
        list(layer.non_trainable_variables),
    )  # the states: the dropout layers' seed generators

    def recomputed(inputs, *args, **kwargs):
        scope = get_stateless_scope()
        if scope is None:
            raise RuntimeError(
                "recompute_layers works inside model.stateless_call only, which "
                "maps every variable to a value."
            )
        weights = [scope.get_current_value(v) for v in weights_of]
        states = [scope.get_current_value(v) for v in states_of]
        advanced = []

        def forward(x, *w):
            with keras.StatelessScope(
                state_mapping=list(zip(weights_of, w)) + list(zip(states_of, states))
            ) as inner:
                y = call(x, *args, **kwargs)
            if not advanced:  # the first run: the seed states after it
                advanced.extend(inner.get_current_value(v) for v in states_of)
            return y

        y = _checkpoint(forward, [inputs, *weights])
        for variable, value in zip(states_of, advanced):
            variable.assign(value)  # into the outer scope, as the plain call
        return y

    return recomputed


def _checkpoint(f, xs):
    """f(*xs), keeping only xs for its first and second derivatives."""
    n = len(xs)

    def vjp(*a):  # a = xs + [dy]: the gradient of ⟨f(xs), dy⟩ wrt xs
        x = _depending_on(a[:n], a[n])
        return tf.gradients(f(*x), x, grad_ys=a[n], unconnected_gradients=_ZERO)

    def vjp_vjp(*a):  # a = xs + [dy] + dgx: the gradient of ⟨vjp, dgx⟩
        a, dgx = _depending_on(a[: n + 1], a[n + 1]), list(a[n + 1 :])
        gx = tf.gradients(f(*a[:n]), a[:n], grad_ys=a[n], unconnected_gradients=_ZERO)
        return tf.gradients(gx, a, grad_ys=dgx, unconnected_gradients=_ZERO)

    @tf.custom_gradient
    def forward(*x):
        with record.stop_recording():
            y = f(*x)

        def backward(dy):
            @tf.custom_gradient
            def first_order(*a):
                with record.stop_recording():
                    gx = vjp(*a)

                def second_order(*dgx):
                    with record.stop_recording():
                        return vjp_vjp(*a, *dgx)

                return gx, second_order

            return first_order(*x, dy)

        return y, backward

    if tf.executing_eagerly():
        raise RuntimeError("recompute_layers works inside a tf.function only.")
    return forward(*xs)


def _depending_on(xs, cotangent):
    """xs + 0, a zero computed from `cotangent`: the recomputation then waits
    for the backward pass instead of being merged with the forward one."""
    first = tf.reshape(cotangent, [-1])[:1]
    same = tf.reduce_all(tf.equal(first, first))  # false only for NaN
    return [x + tf.cast(tf.where(same, 0.0, float("nan")), x.dtype) for x in xs]
