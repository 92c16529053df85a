"""Which layers and models compute in 16 bits: the one test that decides where
`load_classifier`'s changes for bfloat16 and float16 apply."""

import keras

__all__ = ["computes_in_16_bits"]


def computes_in_16_bits(layer):
    """Whether `layer` (a layer or a model) computes in bfloat16 or float16,
    as under `mixed_bfloat16` and `mixed_float16`; its variables may still be
    float32."""
    return keras.backend.standardize_dtype(layer.compute_dtype) in (
        "bfloat16",
        "float16",
    )
