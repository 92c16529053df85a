"""Accuracy per language of a classifier on NLI pairs."""

import logging

import numpy as np
import tensorflow as tf

from keras_metaopt import data

logger = logging.getLogger("keras_metaopt.trainers")


def evaluate(classifier, pairs_by_lang, batch_size=64):
    """`{lang: {"accuracy", "correct": [0/1 per example, in file order]}}`.

    Examples are tokenized once, sorted by real length (longest first) and
    batched so that each batch is trimmed to its own longest sequence: on XNLI
    at 64 tokens this feeds the encoder ~30% fewer tokens than file-order
    batches. Predictions are put back in file order. Padding is masked, so the
    order changes nothing but float round-off.
    """
    predict = tf.function(
        lambda x: tf.argmax(
            classifier(x, training=False), axis=-1, output_type=tf.int32
        ),
        reduce_retracing=True,
    )
    results = {}
    for lang, pairs in pairs_by_lang.items():
        features = _tokenize_all(pairs, classifier.preprocessor, batch_size)
        lengths = features["padding_mask"].astype(np.int64).sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        predictions = np.empty(len(order), np.int32)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            length = int(lengths[index].max())
            batch = {
                key: value[index, :length] if value.ndim >= 2 else value[index]
                for key, value in features.items()
            }
            predictions[index] = predict(batch).numpy()
        correct = (predictions == np.asarray(pairs.labels)).astype(int)
        results[lang] = {"accuracy": float(correct.mean()), "correct": correct.tolist()}
        logger.info("eval %s: %.2f%% of %d", lang, 100 * correct.mean(), len(correct))
    return results


def _tokenize_all(pairs, preprocessor, batch_size):
    """Every example's padded features as numpy arrays, in file order."""
    ds = data.make_dataset(pairs, preprocessor, batch_size, dynamic_padding=False)
    chunks = [x for x, _ in ds.as_numpy_iterator()]
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
