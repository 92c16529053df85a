"""Loading a keras-hub text classifier the way every entry point here does."""

import keras_hub

from keras_metaopt.models.float32_gelu import compute_gelu_in_float32


def load_classifier(preset, **kwargs):
    """`keras_hub.models.TextClassifier.from_preset(preset, **kwargs)`, with the
    GELU computed in float32 when the layers compute in bfloat16 or float16
    (`dtype="mixed_bfloat16"`; see `compute_gelu_in_float32`).

    The trainers, `trainers.evaluate`, `serving.export` and the benchmarks load
    through this one function, so that a model computes alike in all of them.
    """
    classifier = keras_hub.models.TextClassifier.from_preset(str(preset), **kwargs)
    compute_gelu_in_float32(classifier)
    return classifier
