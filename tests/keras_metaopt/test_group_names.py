"""The light group names (`keras_metaopt.group_names`) are the groups that
`LayerGroups`' default rules give the encoders the trainers load."""

import pytest

from keras_metaopt import LayerGroups
from keras_metaopt.group_names import encoder_groups, layer_group, layer_index
from keras_metaopt.testing import tiny_classifier
from keras_metaopt.testing.tiny_models import tiny_xlmr_classifier


@pytest.mark.parametrize(
    "classifier, layers",
    [
        (lambda: tiny_classifier(num_layers=3), 3),
        (lambda: tiny_xlmr_classifier(), 2),
    ],
    ids=["bert-3-layers", "xlm-roberta-2-layers"],
)
def test_encoder_groups_are_the_default_rules_groups(classifier, layers):
    names, _, _ = LayerGroups(frozen=()).assign(classifier().trainable_variables)
    assert names == encoder_groups(layers)


def test_layer_index_reads_only_layer_groups():
    assert [layer_index(layer_group(i)) for i in (0, 7, 12)] == [0, 7, 12]
    assert layer_index("embeddings") is None
    assert layer_index("head") is None
    assert layer_index("transformer_layer_") is None
    assert layer_index("transformer_layer_x") is None
    assert layer_index("my_transformer_layer_3") is None
