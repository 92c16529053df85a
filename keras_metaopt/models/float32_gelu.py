"""GELU computed in float32 inside layers that compute in bfloat16 or float16.

The exact GELU (`0.5 x erfc(-x/√2)`, what BERT, XLM-R and e5 use) is slow in
bfloat16 on CPU: TensorFlow has no vectorised bfloat16 `Erfc`. On e5-small at
64 × 48 tokens the bfloat16 `Erfc` took 4.3× the float32 one, a third of the
whole bfloat16 forward pass, which is why `mixed_bfloat16` made inference only
1.07-1.12× faster while it made every matrix product about 2.4× faster
(BENCHMARKS.md, "Where bf16 inference lost its time"). Casting the
feed-forward activations to float32 for the GELU and back keeps the matrix
products in bfloat16 and gives the activation float32's accuracy as well.

>>> import keras_hub
>>> from keras_metaopt.models import compute_gelu_in_float32
>>> backbone = keras_hub.models.XLMRobertaBackbone(
...     vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=8,
...     intermediate_dim=16, max_sequence_length=8, dtype="mixed_bfloat16")
>>> compute_gelu_in_float32(backbone)  # one feed-forward layer per encoder layer
2
>>> compute_gelu_in_float32(backbone)  # already done
0
"""

import keras

from keras_metaopt.models.sixteen_bit import computes_in_16_bits

__all__ = ["compute_gelu_in_float32", "gelu_float32"]


def gelu_float32(x):
    """The exact GELU of `x` computed in float32, returned in `x`'s dtype."""
    return keras.ops.cast(keras.activations.gelu(keras.ops.cast(x, "float32")), x.dtype)


def compute_gelu_in_float32(model):
    """Makes every exact-GELU `Dense` layer of `model` that computes in a
    16-bit float compute its GELU in float32; returns how many it changed.

    Only the layers' Python activation changes: weights, saved configs (a
    transformer layer serialises its own `activation`, "gelu") and float32
    layers are untouched, so call it after every load (`load_classifier` does).
    """
    changed = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if (
            isinstance(layer, keras.layers.Dense)
            and layer.activation is keras.activations.gelu
            and computes_in_16_bits(layer)
        ):
            layer.activation = gelu_float32
            changed += 1
    return changed
