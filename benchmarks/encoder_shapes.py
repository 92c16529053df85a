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
