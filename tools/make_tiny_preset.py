"""Writes a tiny, randomly initialised BERT classifier preset for tests and demos.

    python -m tools.make_tiny_preset --data-dir ../shared/data/xnli --out presets/tiny

The WordPiece vocabulary is built from the words of the data directory's TSV
files (every character is also a piece, so no text maps to [UNK] only). The
preset loads with `keras_hub.models.TextClassifier.from_preset` and works with
every trainer and with serving export, in seconds on a CPU.
"""

import argparse
import collections
import logging
import pathlib
import re
import unicodedata

import keras
import keras_hub

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
    keras.utils.set_random_seed(seed)
    vocabulary = build_vocabulary(texts, vocabulary_size)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="Directory of *.tsv files.")
    parser.add_argument("--out", required=True, help="Preset directory to write.")
    parser.add_argument("--vocabulary-size", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    texts = []
    for path in sorted(pathlib.Path(args.data_dir).glob("*.tsv")):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i and i <= 2000:
                    texts.extend(line.rstrip("\n").split("\t")[:2])
    make_tiny_preset(
        texts, args.out, args.vocabulary_size, seed=args.seed, dropout=args.dropout
    )
    logging.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
