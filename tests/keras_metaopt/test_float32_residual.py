"""The residual stream and the attention softmax in float32 inside bfloat16
layers: which layers change, which ops compute in which dtype, that the model
comes closer to float32 and still trains, and that `load_classifier` applies
it while saved presets stay as they were."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt.models import compute_residual_in_float32, load_classifier
from keras_metaopt.testing import (
    padded_token_batch,
    tiny_classifier,
    tiny_xlmr_classifier,
)

MATMULS = ("MatMul", "BatchMatMulV2", "Einsum", "_MklMatMul", "_MklBatchMatMulV2")


def _xlmr(dtype, hidden=32):
    return tiny_xlmr_classifier(dtype, hidden_dim=hidden)


def _op_dtypes(model, types):
    graph = (
        tf.function(lambda x: model(x, training=False))
        .get_concrete_function(padded_token_batch())
        .graph
    )
    return [op.get_attr("T").name for op in graph.get_operations() if op.type in types]


def test_only_the_residual_layers_of_16_bit_models_change():
    mixed = _xlmr("mixed_bfloat16")
    # Per transformer layer: itself, 2 dropouts, 2 LayerNorms, the softmax;
    # and the embeddings' LayerNorm and dropout.
    assert compute_residual_in_float32(mixed) == 2 * 6 + 2
    assert compute_residual_in_float32(mixed) == 0
    assert compute_residual_in_float32(_xlmr("mixed_float16")) == 14
    assert compute_residual_in_float32(_xlmr("float32")) == 0
    bert = tiny_classifier(dtype="mixed_bfloat16", num_layers=3)
    assert compute_residual_in_float32(bert) == 3 * 6 + 2
    layer = mixed.backbone.get_layer("transformer_layer_1")
    assert layer.compute_dtype == "float32"
    assert layer._self_attention_layer._softmax.compute_dtype == "float32"
    # The sublayers with the matrix products keep their 16-bit policy.
    assert layer._self_attention_layer.compute_dtype == "bfloat16"
    assert layer._feedforward_intermediate_dense.compute_dtype == "bfloat16"
    assert layer._feedforward_output_dense.compute_dtype == "bfloat16"


def test_softmax_and_residual_adds_move_to_float32_the_matmuls_stay_bfloat16():
    model = _xlmr("mixed_bfloat16")
    matmuls = _op_dtypes(model, MATMULS)
    assert matmuls and set(matmuls) == {"bfloat16"}
    assert _op_dtypes(model, ("Softmax",)) == ["bfloat16", "bfloat16"]
    compute_residual_in_float32(model)
    assert _op_dtypes(model, MATMULS) == matmuls  # the same products, in bfloat16
    assert _op_dtypes(model, ("Softmax",)) == ["float32", "float32"]
    assert model(padded_token_batch()).dtype == tf.bfloat16  # the head is left alone


def test_the_bfloat16_model_comes_closer_to_float32_and_still_trains():
    # The encoder's output (the logits are rounded to bfloat16 by the head).
    reference = _xlmr("float32").backbone(padded_token_batch()).numpy()
    model = _xlmr("mixed_bfloat16")  # the same weights (same seed)

    def error():
        output = model.backbone(padded_token_batch())
        return output.dtype, np.abs(np.asarray(output, np.float32) - reference).mean()

    dtype, before = error()
    compute_residual_in_float32(model)
    assert dtype == tf.bfloat16 and error()[0] == tf.float32
    # What is left is the matrix products' bfloat16 inputs (0.0036 -> 0.0021).
    assert error()[1] < 0.7 * before, (before, error()[1])
    labels = tf.constant([0, 1, 2, 0])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(labels, model(padded_token_batch(), training=True))
    grads = tape.gradient(value, model.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    assert {v.dtype for v in model.weights} <= {"float32", "int64", "uint32"}


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "float32"])
def test_load_classifier_applies_it_and_the_saved_preset_is_unchanged(tmp_path, dtype):
    saved = _xlmr("mixed_bfloat16")
    compute_residual_in_float32(saved)
    saved.save_to_preset(str(tmp_path))
    # A preset saved from a changed model loads in keras-hub as before.
    plain = keras_hub.models.TextClassifier.from_preset(
        str(tmp_path), dtype="mixed_bfloat16"
    )
    assert plain.backbone.get_layer("transformer_layer_0").compute_dtype == "bfloat16"
    loaded = load_classifier(tmp_path, dtype=dtype)
    layer = loaded.backbone.get_layer("transformer_layer_0")
    assert layer.compute_dtype == "float32"
    expected = "bfloat16" if dtype == "mixed_bfloat16" else "float32"
    assert layer._self_attention_layer.compute_dtype == expected
