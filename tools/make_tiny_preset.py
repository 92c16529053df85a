"""Writes a tiny, randomly initialised BERT classifier preset for tests and demos.

A command over `keras_metaopt.testing.make_tiny_preset`:

    python -m tools.make_tiny_preset --data-dir ../shared/data/xnli --out presets/tiny

The WordPiece vocabulary is built from the words of the data directory's TSV
files (every character is also a piece, so no text maps to [UNK] only). The
preset loads with `keras_hub.models.TextClassifier.from_preset` and works with
every trainer and with serving export, in seconds on a CPU.
"""

import logging
import pathlib

from keras_metaopt import cli


def main(argv=None):
    parser = cli.parser("python -m tools.make_tiny_preset", __doc__)
    parser.add_argument("--data-dir", required=True, help="Directory of *.tsv files.")
    parser.add_argument("--out", required=True, help="Preset directory to write.")
    parser.add_argument("--vocabulary-size", type=int, default=3000, help="WordPieces.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights.")
    parser.add_argument("--dropout", type=float, default=0.1, help="Dropout rate.")
    cli.add_log_level_flag(parser)
    args = parser.parse_args(argv)
    cli.configure_logging(args.log_level)
    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
    cli.import_tensorflow()
    from keras_metaopt.testing import make_tiny_preset  # TensorFlow, after the flags

    texts = []
    for path in sorted(pathlib.Path(args.data_dir).glob("*.tsv")):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i and i <= 2000:
                    texts.extend(line.rstrip("\n").split("\t")[:2])
    make_tiny_preset(
        texts, args.out, args.vocabulary_size, seed=args.seed, dropout=args.dropout
    )
    logging.getLogger("keras_metaopt.tools").info("wrote %s", args.out)


if __name__ == "__main__":
    main()
