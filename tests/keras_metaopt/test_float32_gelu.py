"""GELU in float32 inside bfloat16 layers: which layers change, what they
compute, and that loading through `load_classifier` applies it."""

import math

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt.models import compute_gelu_in_float32, gelu_float32, load_classifier
from keras_metaopt.testing import (
    padded_token_batch,
    tiny_classifier,
    tiny_xlmr_classifier,
)


def _xlmr(dtype):
    return tiny_xlmr_classifier(dtype)


def _erfc_dtypes(model):
    graph = (
        tf.function(lambda x: model(x, training=False))
        .get_concrete_function(padded_token_batch())
        .graph
    )
    return [op.get_attr("T").name for op in graph.get_operations() if op.type == "Erfc"]


def test_gelu_float32_rounds_once_where_the_bfloat16_gelu_rounds_three_times():
    x64 = np.linspace(-4, 4, 4097)
    x = tf.constant(x64, tf.bfloat16)  # what the layer's bfloat16 product gives
    exact = np.array(
        [0.5 * v * math.erfc(-v / 2**0.5) for v in x.numpy().astype(np.float64)]
    )
    y = gelu_float32(x)
    assert y.dtype == tf.bfloat16
    nonzero = exact != 0  # gelu(0) = 0 exactly, in both
    relative = {
        name: np.abs(value.numpy().astype(np.float64) - exact)[nonzero]
        / np.abs(exact[nonzero])
        for name, value in (("float32", y), ("bfloat16", keras.activations.gelu(x)))
    }
    # One rounding to bfloat16 (8 significant bits): at most 2⁻⁸ relative.
    assert relative["float32"].max() <= 2.0**-8
    # bfloat16's own erfc, rounded three times, was 12× further here.
    assert relative["bfloat16"].max() > 8 * relative["float32"].max()


def test_only_exact_gelu_layers_computing_in_16_bits_change():
    mixed = _xlmr("mixed_bfloat16")
    assert compute_gelu_in_float32(mixed) == 2  # one feed-forward layer each
    assert compute_gelu_in_float32(mixed) == 0
    assert compute_gelu_in_float32(_xlmr("mixed_float16")) == 2
    assert compute_gelu_in_float32(_xlmr("float32")) == 0
    # BERT's tanh approximation is as fast in bfloat16 (14.3 against 13.8 ms
    # on 3072 × 1536 here): left alone.
    assert compute_gelu_in_float32(tiny_classifier(dtype="mixed_bfloat16")) == 0


def test_the_bfloat16_model_then_computes_erfc_only_in_float32():
    model = _xlmr("mixed_bfloat16")
    assert _erfc_dtypes(model) == ["bfloat16", "bfloat16"]
    before = model(padded_token_batch()).numpy()
    compute_gelu_in_float32(model)
    assert _erfc_dtypes(model) == ["float32", "float32"]
    after = model(padded_token_batch())
    assert after.dtype == tf.bfloat16  # the layers still compute in bfloat16
    reference = _xlmr("float32")(padded_token_batch()).numpy()
    # Same weights, same model: bfloat16 round-off apart, before and after.
    np.testing.assert_allclose(after.numpy().astype(np.float32), reference, atol=0.05)
    np.testing.assert_allclose(before.astype(np.float32), reference, atol=0.05)


@pytest.mark.parametrize(
    "dtype, erfc", [("mixed_bfloat16", "float32"), ("float32", "float32")]
)
def test_load_classifier_applies_it_and_the_saved_preset_is_unchanged(
    tmp_path, dtype, erfc
):
    saved = _xlmr("mixed_bfloat16")
    compute_gelu_in_float32(saved)
    saved.save_to_preset(str(tmp_path))
    # A preset saved from a changed model loads anywhere keras-hub does, alike.
    plain = keras_hub.models.TextClassifier.from_preset(str(tmp_path), dtype="float32")
    loaded = load_classifier(tmp_path, dtype=dtype)
    assert _erfc_dtypes(loaded) == [erfc, erfc]
    np.testing.assert_allclose(
        np.asarray(loaded(padded_token_batch()), np.float32),
        plain(padded_token_batch()).numpy(),
        atol=0.05 if dtype != "float32" else 0,
    )
