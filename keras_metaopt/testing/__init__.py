"""Tiny random models and data for tests, benchmarks and demos (not for training).

One factory for every tiny encoder (`tiny_bert_backbone`), and on top of it:

- `tiny_classifier` / `random_batches` / `train`: a 2-layer BERT classifier
  without preprocessor, random token batches, and plain `apply` steps, for the
  optimizer tests;
- `make_tiny_preset`: a preset with a WordPiece vocabulary built from texts,
  that every trainer and the export accept (`python -m tools.make_tiny_preset`);
- `RandomRunDir`: a whole run directory (`model/`, `run.json`, `rates.json`)
  with random weights, BERT or XLM-R, for the serving tests and benchmarks.

Example:
    >>> from keras_metaopt.testing import random_batches, tiny_classifier
    >>> model = tiny_classifier()
    >>> features, labels = random_batches(1)[0]
    >>> tuple(model(features).shape)
    (4, 3)
"""

from keras_metaopt.testing.random_run_dir import RandomRunDir
from keras_metaopt.testing.tiny_models import (
    SEQ_LEN,
    VOCAB_SIZE,
    padded_token_batch,
    random_batches,
    stack,
    tiny_bert_backbone,
    tiny_classifier,
    tiny_xlmr_classifier,
    train,
)
from keras_metaopt.testing.tiny_preset import build_vocabulary, make_tiny_preset

__all__ = [
    "SEQ_LEN",
    "VOCAB_SIZE",
    "RandomRunDir",
    "build_vocabulary",
    "make_tiny_preset",
    "padded_token_batch",
    "random_batches",
    "stack",
    "tiny_bert_backbone",
    "tiny_classifier",
    "tiny_xlmr_classifier",
    "train",
]
