"""Tiny encoder classifiers and random batches for tests."""

import keras
import keras_hub
import numpy as np

VOCAB_SIZE = 60
SEQ_LEN = 12


def tiny_classifier(seed=0, dtype="float32", num_layers=2, dropout=0.0):
    """A 2-layer BERT classifier (logits), deterministic for a seed."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB_SIZE,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=SEQ_LEN,
        dropout=dropout,
        dtype=dtype,
    )
    return keras_hub.models.BertTextClassifier(
        backbone,
        num_classes=3,
        preprocessor=None,
        activation=None,
        dropout=dropout,
        dtype=dtype,
    )


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
