"""Registered Keras classes for the encoders the project imports offline, and
the one loader every entry point uses.

Import this package before loading a preset that uses them, e.g. the
multilingual-e5-small preset written by `python -m tools.import_e5_small`:

    from keras_metaopt.models import load_classifier  # registers E5Tokenizer
    classifier = load_classifier(
        "presets/multilingual_e5_small", num_classes=3, activation=None)
"""

from keras_metaopt.models.e5_tokenizer import E5Tokenizer
from keras_metaopt.models.einsum_matmul import compute_einsum_dense_as_matmul
from keras_metaopt.models.float32_gelu import compute_gelu_in_float32, gelu_float32
from keras_metaopt.models.float32_residual import compute_residual_in_float32
from keras_metaopt.models.loading import load_classifier

__all__ = [
    "E5Tokenizer",
    "compute_einsum_dense_as_matmul",
    "compute_gelu_in_float32",
    "compute_residual_in_float32",
    "gelu_float32",
    "load_classifier",
]
