"""Mixed precision: layers compute in bfloat16; weights, φ, moments and losses stay float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import MetaOptimizer, MetaStep, TrainStep
from keras_metaopt.testing import random_batches, stack, tiny_classifier

L = 3


def _iterator(n, seed):
    return iter(tf.data.Dataset.from_tensor_slices(stack(random_batches(n, seed=seed))))


def test_meta_step_under_mixed_bfloat16_keeps_every_state_float32():
    model = tiny_classifier(dtype="mixed_bfloat16")
    features, _ = random_batches(1)[0]
    assert model(features).dtype == tf.bfloat16  # the layers compute in bfloat16
    optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2), initial_phi=[0.5, -0.5, 0.0])
    step = MetaStep(model, optimizer, L)
    start = [v.numpy() for v in model.trainable_variables]
    result = step(_iterator(L, 1), _iterator(1, 2))
    for key in ("train_loss", "heldout_loss", "meta_gradient"):
        assert result[key].dtype == tf.float32, key
    assert np.all(np.isfinite(result["meta_gradient"].numpy()))
    # Variables, φ, Adam's moments, the update sums and counters: float32 (or int).
    dtypes = {v.dtype for v in model.weights + optimizer.variables}
    assert dtypes <= {"float32", "int64", "uint32", "int32"}, dtypes
    assert optimizer.phi.dtype == "float32"
    assert not np.allclose(optimizer.phi.numpy(), [0.5, -0.5, 0.0])
    moved = [
        np.abs(v.numpy() - s).max() for v, s in zip(model.trainable_variables, start)
    ]
    assert max(moved) > 1e-3


def test_mixed_bfloat16_computes_in_bfloat16_not_float32():
    # Same start, same batches: bfloat16's 8-bit mantissa must show in the
    # loss (it would not if the policy were silently ignored), but only at
    # bfloat16's precision (2⁻⁸ relative per rounding, a few roundings deep).
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        model = tiny_classifier(dtype=policy)
        optimizer = keras.optimizers.Adam(1e-2)
        losses[policy] = float(TrainStep(model, optimizer, 2)(_iterator(2, 3)))
    gap = abs(losses["float32"] - losses["mixed_bfloat16"]) / losses["float32"]
    assert 1e-5 < gap < 0.05, losses


def test_policies_the_meta_optimizer_cannot_train_under_are_refused():
    half = tiny_classifier(dtype="mixed_float16")
    with pytest.raises(ValueError, match="float16 needs loss scaling.*mixed_bfloat16"):
        MetaStep(half, MetaOptimizer(keras.optimizers.Adam(1e-2)), L)
    with pytest.raises(ValueError, match="float16 needs loss scaling"):
        TrainStep(half, MetaOptimizer(keras.optimizers.Adam(1e-2)))
    TrainStep(half, keras.optimizers.Adam(1e-2))  # plain Keras: Keras's rules
    mixed = tiny_classifier(dtype="mixed_bfloat16")
    exact = MetaOptimizer(keras.optimizers.Adam(1e-2), meta_gradient="exact")
    with pytest.raises(ValueError, match="got the mixed_bfloat16 policy.*first_order"):
        MetaStep(mixed, exact, L)
