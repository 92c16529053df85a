"""The tiny encoder factory, and the classifier and batches the optimizer tests use."""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

VOCAB_SIZE = 60
SEQ_LEN = 12


def tiny_bert_backbone(
    vocabulary_size,
    num_layers=2,
    num_heads=2,
    hidden_dim=8,
    intermediate_dim=16,
    max_sequence_length=SEQ_LEN,
    dropout=0.0,
    dtype=None,
):
    """A `keras_hub.models.BertBackbone` of the given (small) shape; its weights
    come from Keras's global seed (`keras.utils.set_random_seed`)."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        max_sequence_length=max_sequence_length,
        dropout=dropout,
        dtype=dtype,
    )


def tiny_xlmr_classifier(dtype="float32", hidden_dim=8, seed=0):
    """A 2-layer XLM-R classifier (logits; vocabulary 30, length 12, the exact
    GELU), deterministic for a seed: what the mixed-precision tests load."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.XLMRobertaBackbone(
        vocabulary_size=30,
        num_layers=2,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        max_sequence_length=SEQ_LEN,
        dtype=dtype,
    )
    return keras_hub.models.XLMRobertaTextClassifier(
        backbone, num_classes=3, preprocessor=None, activation=None, dtype=dtype
    )


def padded_token_batch():
    """Four rows of `tiny_xlmr_classifier`'s inputs, 12, 9, 5 and 2 tokens long."""
    rng = np.random.default_rng(0)
    return {
        "token_ids": tf.constant(rng.integers(3, 30, (4, SEQ_LEN)), tf.int32),
        "padding_mask": tf.constant(np.arange(SEQ_LEN) < [[12], [9], [5], [2]]),
    }


def tiny_classifier(seed=0, dtype="float32", num_layers=2, dropout=0.0):
    """A 2-layer BERT classifier (logits), deterministic for a seed."""
    keras.utils.set_random_seed(seed)
    backbone = tiny_bert_backbone(
        VOCAB_SIZE, num_layers=num_layers, dropout=dropout, dtype=dtype
    )
    return keras_hub.models.BertTextClassifier(
        backbone,
        num_classes=3,
        preprocessor=None,
        activation=None,
        dropout=dropout,
        dtype=dtype,
    )


def train(model, optimizer, batches, variables=None, loss=None):
    """Plain GradientTape steps with `optimizer.apply`; `variables` defaults to
    all trainable ones, `loss` to sparse cross-entropy on logits."""
    variables = variables or model.trainable_variables
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(features, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(features, training=True))
        optimizer.apply(tape.gradient(value, variables), variables)

    for features, labels in batches:
        step(features, labels)


def random_batches(n, batch_size=4, seed=0):
    """`n` batches of (features, labels) with random token ids."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        lengths = rng.integers(4, SEQ_LEN + 1, batch_size)
        mask = (np.arange(SEQ_LEN)[None, :] < lengths[:, None]).astype("int32")
        features = {
            "token_ids": rng.integers(5, VOCAB_SIZE, (batch_size, SEQ_LEN)).astype(
                "int32"
            )
            * mask,
            "segment_ids": (
                np.arange(SEQ_LEN)[None, :] >= lengths[:, None] // 2
            ).astype("int32")
            * mask,
            "padding_mask": mask,
        }
        labels = rng.integers(0, 3, batch_size).astype("int32")
        batches.append((features, labels))
    return batches


def stack(batches):
    """Stacks batches into one tensor dict, for `tf.data.Dataset.from_tensor_slices`."""
    features = {k: np.stack([b[0][k] for b in batches]) for k in batches[0][0]}
    return features, np.stack([b[1] for b in batches])
