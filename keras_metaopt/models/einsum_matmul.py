"""The attention projections of 16-bit models as one matrix product each.

keras-hub's attention computes its query, key, value and output projections
with `EinsumDense` (`"abc,cde->abde"`, `"abcd,cde->abe"`). With the trainers'
batches, whose length is only known when they come, Keras hands these to
`tf.einsum`, which TensorFlow computes as a batched matrix product with the
kernel broadcast over the batch; its gradient then computes one kernel
gradient per example and sums them (`BatchMatMulV2` and `Sum`). On e5-small
at 32 × 48 tokens in bfloat16 that took 0.71 s of a 2.6 s gradient's op time,
about what the feed-forward layers' twice as many multiply-adds took as plain
`MatMul`s. Computed as `tensordot` (the batch and length axes folded into the
rows of one `MatMul`, as Keras's `Dense` does), each projection and its
gradient are single matrix products with float32 accumulation.

The result is the same sum in another order, so it changes round-off only;
`compute_einsum_dense_as_matmul` leaves float32 models alone, so that their
runs still reproduce the committed ones bit for bit (a float32 gradient was
1.09-1.10× faster with it too: benchmarks/investigate/einsum-matmul/).

>>> import keras_hub
>>> from keras_metaopt.models.einsum_matmul import (
...     compute_einsum_dense_as_matmul, contracted_axes)
>>> backbone = keras_hub.models.XLMRobertaBackbone(
...     vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=8,
...     intermediate_dim=16, max_sequence_length=8, dtype="mixed_bfloat16")
>>> compute_einsum_dense_as_matmul(backbone)  # query, key, value, output × 2
8
>>> compute_einsum_dense_as_matmul(backbone)  # already done
0
>>> contracted_axes("abc,cde->abde"), contracted_axes("abcd,cde->abe")
(1, 2)
>>> contracted_axes("abc,dce->abde") is None  # not a tensordot: left alone
True
"""

import keras

from keras_metaopt.models.sixteen_bit import computes_in_16_bits

__all__ = ["compute_einsum_dense_as_matmul", "contracted_axes"]


def contracted_axes(equation):
    """How many trailing input axes `equation` contracts with the kernel's
    leading ones, when it is exactly a `tensordot` of the two (the output is
    the input's other axes, then the kernel's); `None` otherwise."""
    inputs, output = equation.split("->")
    x, kernel = inputs.split(",")
    for n in range(min(len(x), len(kernel)), 0, -1):
        if x[-n:] == kernel[:n] and x[:-n] + kernel[n:] == output:
            if len(set(x + kernel)) == len(x) + len(kernel) - n:
                return n
    return None


def _tensordot_call(layer, axes):
    """`EinsumDense.call` with the einsum written as a `tensordot`."""

    def call(inputs, training=None):
        x = keras.ops.tensordot(inputs, layer.kernel, axes=axes)
        if layer.bias is not None:
            x = keras.ops.add(x, layer.bias)
        if layer.activation is not None:
            x = layer.activation(x)
        return x

    call.tensordot_axes = axes
    return call


def compute_einsum_dense_as_matmul(model):
    """Makes every `EinsumDense` layer of `model` that computes in a 16-bit
    float and whose equation is a `tensordot` compute it as one; returns how
    many it changed.

    Only the layers' Python `call` changes: weights, saved configs and
    float32 layers are untouched, so call it after every load
    (`load_classifier` does). Layers with LoRA or quantized kernels are left
    alone.
    """
    changed = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if (
            isinstance(layer, keras.layers.EinsumDense)
            and computes_in_16_bits(layer)
            and not hasattr(layer.call, "tensordot_axes")
            and not layer.lora_enabled
            and layer.quantization_mode is None
        ):
            axes = contracted_axes(layer.equation)
            if axes is not None:
                layer.call = _tensordot_call(layer, axes)
                changed += 1
    return changed
