"""A tiny BERT classifier preset with a WordPiece vocabulary built from texts.

The vocabulary holds every character (alone and as ##c), so no text maps to
[UNK] only. The preset loads with `keras_hub.models.TextClassifier.from_preset`
and works with every trainer and with the serving export, in seconds on a CPU.
"""

import collections
import re
import unicodedata

import keras
import keras_hub

from keras_metaopt.testing.tiny_models import tiny_bert_backbone

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_vocabulary(texts, size):
    """Specials, every character (alone and as ##c), then the commonest words."""
    words, chars = collections.Counter(), set()
    for text in texts:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        for word in re.findall(r"\w+|[^\w\s]", text):
            words[word] += 1
            chars.update(word)
    pieces = SPECIAL + sorted(chars) + [f"##{c}" for c in sorted(chars)]
    seen = set(pieces)
    for word, _ in words.most_common():
        if len(pieces) >= size:
            break
        if word not in seen:
            pieces.append(word)
            seen.add(word)
    return pieces


def make_tiny_preset(
    texts, out, vocabulary_size=3000, sequence_length=64, seed=0, dropout=0.1
):
    """Writes a 2-layer, 32-wide BERT classifier preset (random weights from
    `seed`, WordPiece vocabulary from `texts`) to `out`; returns `out`."""
    keras.utils.set_random_seed(seed)
    vocabulary = build_vocabulary(texts, vocabulary_size)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = tiny_bert_backbone(
        len(vocabulary),
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=max(128, sequence_length),
        dropout=dropout,
    )
    classifier = keras_hub.models.BertTextClassifier(
        backbone,
        num_classes=3,
        preprocessor=preprocessor,
        activation=None,
        dropout=dropout,
    )
    classifier.save_to_preset(str(out))
    return out
