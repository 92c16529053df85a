"""The names of the default layer groups (`LayerGroups.DEFAULT_RULES`).

A light module (no TensorFlow or Keras), so that the trainers can check a
rates file or a `--freeze` against an encoder's config before any model loads.

Example:

>>> encoder_groups(2)
['embeddings', 'transformer_layer_0', 'transformer_layer_1', 'head']
>>> layer_index("transformer_layer_11"), layer_index("head")
(11, None)
"""

EMBEDDINGS = "embeddings"
HEAD = "head"
LAYER_PREFIX = "transformer_layer_"


def layer_group(index):
    """The group of transformer layer `index` (from 0, the bottom)."""
    return f"{LAYER_PREFIX}{index}"


def layer_index(group):
    """The layer number of a `transformer_layer_{i}` group; None for any other."""
    index = group.removeprefix(LAYER_PREFIX)
    return int(index) if index != group and index.isdigit() else None


def encoder_groups(num_layers):
    """Every default group of an encoder of `num_layers` layers, bottom to top."""
    return [EMBEDDINGS, *(layer_group(i) for i in range(num_layers)), HEAD]
