"""keras-metaopt: meta-learned layer-wise learning rates for Keras 3 / TensorFlow."""

from keras_metaopt import models  # noqa: F401  (registers E5Tokenizer for presets)
from keras_metaopt.layer_groups import LayerGroups
from keras_metaopt.meta_optimizer import MetaOptimizer
from keras_metaopt.meta_step import MetaStep
from keras_metaopt.train_step import TrainStep

__all__ = ["LayerGroups", "MetaOptimizer", "MetaStep", "TrainStep"]
