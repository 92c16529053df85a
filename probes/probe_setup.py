"""What the probes share once their command line is parsed (`probe_flags`):
their start, the English model and the held-out set.

A probe is one experiment on a seed's English model (`--init-from`), run with
the trainers' own flags and run directory so that it measures exactly what
`trainers.meta` would compute: the same data, batches, seeds and dropout.
"""

import keras
import tensorflow as tf

from keras_metaopt import data
from trainers.process import setup_process
from trainers.run import Run


def open_probe(args, name):
    """The `Run` of probe `name` (its run directory and process set-up)."""
    return Run(args, name, setup_process(args))


def heldout_loss(classifier, batches):
    """Mean cross-entropy (inference mode) over fixed batches."""
    total, count = 0.0, 0
    for features, labels in batches:
        logits = classifier(features, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        )
        total += float(tf.reduce_sum(losses))
        count += int(labels.shape[0])
    return total / count


def load_probe(run):
    """The English model, the training sources and the fixed held-out batches.

    Returns `(classifier, train_langs, batches, n)`: `train_langs` maps every
    source language but `--heldout` to its pairs; `batches` are the first
    `n = --heldout-examples` held-out pairs.
    """
    args = run.args
    sources = {"en": run.pairs(args.en_split, "en")}
    sources.update(run.aux_pairs())
    if args.heldout not in sources:
        raise SystemExit(f"--heldout {args.heldout}: not a source ({sorted(sources)}).")
    train_langs = {x: p for x, p in sources.items() if x != args.heldout}
    classifier = run.load_classifier(run.stage1_preset(), stage="probe")
    heldout = sources[args.heldout]
    n = min(args.heldout_examples, len(heldout))
    batches = list(
        data.make_dataset(heldout[:n], classifier.preprocessor, args.batch_size)
    )
    return classifier, train_langs, batches, n
