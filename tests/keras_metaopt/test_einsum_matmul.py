"""Attention projections of 16-bit models as one MatMul: which layers change,
that they compute the same function and gradient, which ops they run, and that
`load_classifier` applies it."""

import re

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt.models import compute_einsum_dense_as_matmul, load_classifier
from keras_metaopt.models.einsum_matmul import _tensordot_call, contracted_axes
from keras_metaopt.testing import padded_token_batch, tiny_xlmr_classifier


@pytest.mark.parametrize(
    "equation, axes",
    [
        ("abc,cde->abde", 1),  # query, key, value
        ("abcd,cde->abe", 2),  # attention output
        ("abc,cd->abd", 1),
        ("ab,bc->ac", 1),
        ("abc,dce->abde", None),  # contracted axis not the kernel's first
        ("abc,cde->abed", None),  # output axes permuted
        ("abc,cd->abcd", None),  # nothing contracted
        ("abc,bc->abc", None),  # "b", "c" kept in the output: not a product
    ],
)
def test_contracted_axes(equation, axes):
    assert contracted_axes(equation) == axes


# Their name scopes ("…/self_attention_layer/query_1/einsum/Einsum").
PROJECTION = re.compile(r"/(query|key|value|attention_output)(_\d+)?/")


def _projection_ops(model, gradient):
    """The op types of the attention projections (forward, or the gradient of
    the model's output), traced as the trainers run the model: for batches
    whose shape is known only when they come."""
    spec = {
        "token_ids": tf.TensorSpec([None, None], tf.int32),
        "padding_mask": tf.TensorSpec([None, None], tf.bool),
    }

    def run(x):
        if not gradient:
            return model(x, training=False)
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.cast(model(x, training=False), tf.float32) ** 2)
        return tape.gradient(y, model.trainable_variables)

    graph = tf.function(run).get_concrete_function(spec).graph
    return sorted(
        op.type
        for op in graph.get_operations()
        if PROJECTION.search(op.name)
        and op.type in ("Einsum", "MatMul", "BatchMatMulV2", "Sum")
    )


def test_only_16_bit_attention_projections_change():
    mixed = tiny_xlmr_classifier("mixed_bfloat16")
    # query, key, value and output of each of the 2 layers
    assert compute_einsum_dense_as_matmul(mixed) == 8
    assert compute_einsum_dense_as_matmul(mixed) == 0
    assert compute_einsum_dense_as_matmul(tiny_xlmr_classifier("mixed_float16")) == 8
    assert compute_einsum_dense_as_matmul(tiny_xlmr_classifier("float32")) == 0


def test_the_projections_and_their_gradients_become_plain_matmuls():
    model = tiny_xlmr_classifier("mixed_bfloat16")
    # 8 projections: an einsum forward, two in the gradient (which TensorFlow
    # runs as a batched product and a Sum over the examples' kernel
    # gradients); the Sums, in both, are bias gradients.
    before = _projection_ops(model, gradient=True)
    assert before == ["Einsum"] * 24 + ["Sum"] * 6
    compute_einsum_dense_as_matmul(model)
    # One MatMul forward and two in the gradient each, as a Dense layer has.
    assert _projection_ops(model, gradient=True) == ["MatMul"] * 24 + ["Sum"] * 6
    assert _projection_ops(model, gradient=False) == ["MatMul"] * 8


def test_same_function_and_gradient_as_the_einsum():
    # In float32, so that only the summation order can differ: the call that
    # compute_einsum_dense_as_matmul gives 16-bit layers, on a float32 layer.
    rng = np.random.default_rng(0)
    for equation, x_shape, kernel_shape, bias_axes in (
        ("abc,cde->abde", (3, 5, 8), (8, 2, 4), "de"),
        ("abcd,cde->abe", (3, 5, 2, 4), (2, 4, 8), "e"),
    ):
        axes = contracted_axes(equation)
        layer = keras.layers.EinsumDense(
            equation,
            output_shape=(None, *kernel_shape[axes:]),
            bias_axes=bias_axes,
            dtype="float32",
        )
        x = tf.constant(rng.normal(size=x_shape), tf.float32)
        layer.build(x.shape)
        assert tuple(layer.kernel.shape) == kernel_shape
        layer.kernel.assign(rng.normal(size=kernel_shape))
        layer.bias.assign(rng.normal(size=layer.bias.shape))
        weights = tf.constant(rng.normal(size=layer(x).shape), tf.float32)

        def value_and_grads(layer=layer, x=x, weights=weights):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(weights * y)
            return [y, *tape.gradient(loss, [x, layer.kernel, layer.bias])]

        reference = value_and_grads()
        layer.call = _tensordot_call(layer, axes)
        changed = value_and_grads()
        for a, b in zip(reference, changed):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)
        assert np.abs(reference[2].numpy()).max() > 1  # a kernel gradient to check


def test_the_bfloat16_model_computes_as_before_up_to_round_off():
    model = tiny_xlmr_classifier("mixed_bfloat16")
    before = model(padded_token_batch()).numpy().astype(np.float32)
    compute_einsum_dense_as_matmul(model)
    after = model(padded_token_batch())
    assert after.dtype == tf.bfloat16
    np.testing.assert_allclose(after.numpy().astype(np.float32), before, atol=0.02)


@pytest.mark.parametrize(
    "dtype, op", [("mixed_bfloat16", "MatMul"), ("float32", "Einsum")]
)
def test_load_classifier_applies_it_to_16_bit_models_only(tmp_path, dtype, op):
    tiny_xlmr_classifier("mixed_bfloat16").save_to_preset(str(tmp_path))
    loaded = load_classifier(tmp_path, dtype=dtype)
    assert _projection_ops(loaded, gradient=False) == [op] * 8
    # The saved preset stays a plain keras-hub one.
    plain = keras_hub.models.TextClassifier.from_preset(str(tmp_path), dtype=dtype)
    assert _projection_ops(plain, gradient=False) == ["Einsum"] * 8
