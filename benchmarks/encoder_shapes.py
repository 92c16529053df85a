"""Encoder shapes the benchmarks share (keras-hub backbone keyword arguments)."""

# multilingual-e5-small: 12 layers, hidden 384, 12 heads, FF 1536, XLM-R vocabulary.
E5_SMALL = dict(
    vocabulary_size=250_037,
    num_layers=12,
    num_heads=12,
    hidden_dim=384,
    intermediate_dim=1536,
    max_sequence_length=512,
)


def frozen_embedding_classifier(**shape):
    """A 3-class `BertTextClassifier` (logits, no preprocessor) on a
    `BertBackbone(**shape)` with random weights and its embeddings frozen, as
    the paper trains them: the model the meta-step benchmarks time."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(**shape)
    model = keras_hub.models.BertTextClassifier(
        backbone, num_classes=3, preprocessor=None, activation=None
    )
    for layer in backbone.layers:
        if "embedding" in layer.name:
            layer.trainable = False
    return model


def random_rows(rows, sequence_length, vocabulary_size, seed=0):
    """`(features, labels)` as NumPy arrays: `rows` rows of random token ids
    in `[5, vocabulary_size)` with no padding and one segment, and random
    labels of 3 classes; the same arrays for the same arguments. The inputs
    of `frozen_embedding_classifier` that the meta-step benchmarks time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (rows, sequence_length)
    features = {
        "token_ids": rng.integers(5, vocabulary_size, shape).astype("int32"),
        "segment_ids": np.zeros(shape, "int32"),
        "padding_mask": np.ones(shape, "int32"),
    }
    labels = rng.integers(0, 3, rows).astype("int32")
    return features, labels


def repeated_batches(features, labels, batch_size):
    """`(features, labels)` as a `tf.data.Dataset` of full batches, cached
    and repeated without end."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((features, labels))
    return data.batch(batch_size, drop_remainder=True).cache().repeat()
