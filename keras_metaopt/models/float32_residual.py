"""The residual stream and the attention softmax in float32 inside layers that
compute in bfloat16 or float16, as `torch.autocast` keeps them.

Under Keras's `mixed_bfloat16` every layer casts its inputs to bfloat16, so a
transformer's residual stream (each layer's input, the sums `x + sublayer(x)`
and the LayerNorms' outputs) is rounded to 8 significant bits at every layer,
and the attention softmax is computed and normalised in bfloat16. PyTorch's
autocast, what Hugging Face's `bf16=True` uses, computes only the matrix
products in bfloat16 and keeps the rest in float32. On xnli-proxy the
difference showed: the 300-step English stage in Keras's bfloat16 lost 2.7
points of target accuracy against float32 on seed 1, with the GELU in float32
too (BENCHMARKS.md, "The fast settings against float32").

`compute_residual_in_float32(model)` gives every keras-hub `TransformerEncoder`
of `model` a float32 policy for its adds (its own policy and its two dropouts
after the sublayers), its two LayerNorms and its attention softmax, and the
backbone's embedding LayerNorm and dropout one too. The attention and
feed-forward sublayers keep their 16-bit policy: they cast their float32
inputs to 16 bits for the matrix products as before.

>>> import keras_hub
>>> from keras_metaopt.models import compute_residual_in_float32
>>> backbone = keras_hub.models.XLMRobertaBackbone(
...     vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=8,
...     intermediate_dim=16, max_sequence_length=8, dtype="mixed_bfloat16")
>>> compute_residual_in_float32(backbone)  # 2 layers x 6, the embeddings' 2
14
>>> backbone.get_layer("transformer_layer_0").compute_dtype
'float32'
>>> compute_residual_in_float32(backbone)  # already done
0
"""

import keras

from keras_metaopt.layer_recompute import transformer_layers
from keras_metaopt.models.sixteen_bit import computes_in_16_bits

__all__ = ["compute_residual_in_float32"]

_FLOAT32 = "float32"
# The backbone's layers between the embeddings and the first transformer layer
# (keras-hub's BERT and XLM-R backbones name them so).
_EMBEDDING_LAYERS = ("embeddings_layer_norm", "embeddings_dropout")


def _float32_layers(model):
    """The layers that keep the residual stream and the softmax in float32."""
    for layer in transformer_layers(model):
        yield from (
            layer,
            layer._self_attention_dropout,
            layer._feedforward_dropout,
            layer._self_attention_layer_norm,
            layer._feedforward_layer_norm,
            layer._self_attention_layer._softmax,
        )
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.name in _EMBEDDING_LAYERS:
            yield layer


def compute_residual_in_float32(model):
    """Makes the residual stream and the attention softmax of every
    transformer layer of `model` compute in float32 when `model` computes in
    a 16-bit float; returns how many layers it changed.

    Only the layers' dtype policies change: weights (float32 under every
    mixed policy) and saved configs are untouched, and float32 models are
    left alone, so call it after every load (`load_classifier` does).
    """
    if not computes_in_16_bits(model):
        return 0
    changed = 0
    for layer in _float32_layers(model):
        if layer.compute_dtype != _FLOAT32:
            layer.dtype_policy = keras.DTypePolicy(_FLOAT32)
            changed += 1
    return changed
