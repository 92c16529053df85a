"""The base-optimizer contract (`keras_metaopt.base_step`), for every Keras optimizer.

Each class in `keras.optimizers` either reproduces its own `apply` when every
rate is exactly 1 (`rates_param="exp"`, φ = 0) or is refused when the
`MetaOptimizer` is made, with a message naming why. A class missing from
`EXPECTED` (e.g. one a new Keras adds) fails, so that it gets classified.
"""

import inspect
import re

import keras
import numpy as np
import pytest

from keras_metaopt import MetaOptimizer
from keras_metaopt.testing import random_batches, tiny_classifier, train

EMBEDDINGS = ("token_embedding", "position_embedding", "segment_embedding")

# "exact": bit for bit. "close": within 1e-6, where the wrapper sums what the
# class writes in several steps (decoupled weight decay folded into Δθ; Ftrl's
# and ScheduleFreeAdamW's absolute writes) and float32 rounds the sum once.
# Anything else: the refusal message.
EXPECTED = {
    "Adadelta": "exact",
    "Adafactor": "exact",
    "Adagrad": "exact",
    "Adam": "exact",
    "AdamW": "close",
    "Adamax": "exact",
    "Ftrl": "close",
    "Lamb": "exact",
    "Lion": "exact",
    "RMSprop": "exact",
    "SGD": "exact",
    "ScheduleFreeAdamW": "close",
    "Nadam": "it overrides `_backend_update_step`",
    "Muon": "it overrides `_apply_weight_decay`",
    "LossScaleOptimizer": "itself a wrapper of other optimizers",
    "MultiOptimizer": "itself a wrapper of other optimizers",
    "Optimizer": "it does not implement `update_step`",
}


def _classes():
    return sorted(
        name
        for name, value in vars(keras.optimizers).items()
        if inspect.isclass(value)
        and issubclass(value, keras.optimizers.Optimizer)
        and name != "MetaOptimizer"
    )


def _make(name):
    cls = getattr(keras.optimizers, name)
    if name == "LossScaleOptimizer":
        return cls(keras.optimizers.Adam(1e-2))
    if name == "MultiOptimizer":
        return cls(keras.optimizers.OptimizerMap(keras.optimizers.Adam(1e-2)))
    # Adadelta's steps are tiny at 1e-2; 1.0 is its paper's rate.
    return cls(learning_rate=1.0 if name == "Adadelta" else 1e-2)


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


def test_every_keras_optimizer_is_classified():
    assert _classes() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rate_one_reproduces_the_optimizer_or_it_is_refused(name):
    expected = EXPECTED[name]
    if expected not in ("exact", "close"):
        with pytest.raises(ValueError, match=re.escape(f"cannot wrap {name}")) as err:
            MetaOptimizer(_make(name), rates_param="exp", initial_phi=0.0)
        assert expected in str(err.value)
        return
    batches = random_batches(4)
    reference = tiny_classifier()
    trained = [
        v
        for v in reference.trainable_variables
        if not v.path.startswith(EMBEDDINGS + ("embeddings_layer_norm",))
    ]
    train(reference, _make(name), batches, trained)
    model = tiny_classifier()
    optimizer = MetaOptimizer(_make(name), rates_param="exp", initial_phi=0.0)
    train(model, optimizer, batches)
    np.testing.assert_array_equal(optimizer.rates().get("head"), 1.0)
    start = _weights(tiny_classifier())
    moved = max(np.abs(a - b).max() for a, b in zip(start, _weights(reference)))
    assert moved > 1e-4, f"{name} barely moved ({moved:.2g}): the test would be void"
    for ref, got in zip(_weights(reference), _weights(model)):
        if expected == "exact":
            np.testing.assert_array_equal(got, ref)
        else:
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_the_refusals_say_what_to_do():
    with pytest.raises(ValueError, match="wrap the inner optimizer instead"):
        MetaOptimizer(_make("LossScaleOptimizer"))
    with pytest.raises(ValueError, match="Supported: Adam, AdamW, SGD"):
        MetaOptimizer(keras.optimizers.Nadam())
    with pytest.raises(ValueError, match="cannot wrap MetaOptimizer"):
        MetaOptimizer(MetaOptimizer())
    with pytest.raises(TypeError, match="must be a keras.optimizers.Optimizer"):
        MetaOptimizer(object())
