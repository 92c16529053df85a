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
