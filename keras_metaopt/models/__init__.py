"""Registered Keras classes for the encoders the project imports offline.

Import this package before loading a preset that uses them, e.g. the
multilingual-e5-small preset written by `python -m tools.import_e5_small`:

    import keras_metaopt.models  # registers keras_metaopt>E5Tokenizer
    classifier = keras_hub.models.TextClassifier.from_preset(
        "presets/multilingual_e5_small", num_classes=3, activation=None)
"""

from keras_metaopt.models.e5_tokenizer import E5Tokenizer

__all__ = ["E5Tokenizer"]
