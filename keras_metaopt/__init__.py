"""keras-metaopt: meta-learned layer-wise learning rates for Keras 3 / TensorFlow.

The public classes load on first use (PEP 562), so that the light modules
(`keras_metaopt.formats`) can be imported without TensorFlow or Keras, e.g.
by the serving client. Loading any of them also registers the project's Keras
classes for presets (`keras_metaopt.models`), as importing the package did.
"""

import importlib

_EXPORTS = {
    "LayerGroups": "keras_metaopt.layer_groups",
    "MetaOptimizer": "keras_metaopt.meta_optimizer",
    "MetaStep": "keras_metaopt.meta_step",
    "TrainStep": "keras_metaopt.train_step",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:  # a submodule, e.g. `keras_metaopt.data`
        try:
            return importlib.import_module(f"keras_metaopt.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"keras_metaopt.{name}":
                raise
            raise AttributeError(
                f"module 'keras_metaopt' has no attribute {name!r}"
            ) from None
    importlib.import_module("keras_metaopt.models")  # registers E5Tokenizer
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
