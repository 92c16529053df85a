"""`--layer-decay`'s rates, ELECTRA's: d^(n + 1 - i) for layer i of n (the
top layer d^2, each layer below one more power of d), 1 for the head."""

import pytest

from keras_metaopt.group_names import encoder_groups
from trainers.finetune_training import layer_decay_rates


def test_layer_decay_rates_of_a_three_layer_encoder():
    rates = layer_decay_rates(encoder_groups(3)[1:], 0.5)  # embeddings frozen
    assert rates == {
        "transformer_layer_0": pytest.approx(0.5**4),
        "transformer_layer_1": pytest.approx(0.5**3),
        "transformer_layer_2": pytest.approx(0.5**2),
        "head": 1.0,
    }
