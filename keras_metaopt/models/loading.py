"""Loading a keras-hub text classifier the way every entry point here does."""

import keras_hub

from keras_metaopt.models.einsum_matmul import compute_einsum_dense_as_matmul
from keras_metaopt.models.float32_gelu import compute_gelu_in_float32
from keras_metaopt.models.float32_residual import compute_residual_in_float32


def load_classifier(preset, **kwargs):
    """`keras_hub.models.TextClassifier.from_preset(preset, **kwargs)`, with the
    GELU, the residual stream and the attention softmax computed in float32
    when the layers compute in bfloat16 or float16 (`dtype="mixed_bfloat16"`;
    see `compute_gelu_in_float32` and `compute_residual_in_float32`): only
    the matrix products run in 16 bits, as under `torch.autocast`; and the
    attention projections of such models computed as one matrix product each
    (`compute_einsum_dense_as_matmul`).

    The trainers, `trainers.evaluate`, `serving.export` and the benchmarks load
    through this one function, so that a model computes alike in all of them.
    """
    classifier = keras_hub.models.TextClassifier.from_preset(str(preset), **kwargs)
    compute_gelu_in_float32(classifier)
    compute_residual_in_float32(classifier)
    compute_einsum_dense_as_matmul(classifier)
    return classifier
