"""The data layer: loading NLI pairs from any source, and the tf.data pipeline.

Names load on first use (PEP 562): the readers (`keras_metaopt.data.tsv`,
`labels`) import without TensorFlow, so the serving client can use them; the
pipeline and the TFDS source bring TensorFlow in when first touched.

Usage (needs an XNLI data directory, and the network for the preset):

    import keras_hub
    from keras_metaopt import data
    pairs = data.load_pairs("/work/shared/data/xnli", "dev[:1245]", "de")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(
        "bert_base_multi", sequence_length=128)
    ds = data.make_dataset(pairs, pre, 32, shuffle=True, seed=0)
"""

import importlib

_EXPORTS = {
    "DataFormatError": "keras_metaopt.data.data_format_error",
    "XNLI_URLS": "keras_metaopt.data.download",
    "download_xnli": "keras_metaopt.data.download",
    "LABEL_NAMES": "keras_metaopt.data.labels",
    "NUM_LABELS": "keras_metaopt.data.labels",
    "label_id": "keras_metaopt.data.labels",
    "detect_layout": "keras_metaopt.data.loaders",
    "list_languages": "keras_metaopt.data.loaders",
    "load_pairs": "keras_metaopt.data.loaders",
    "network_error": "keras_metaopt.data.network",
    "NliPairs": "keras_metaopt.data.nli_pairs",
    "OfflineError": "keras_metaopt.data.offline_error",
    "group_by_length": "keras_metaopt.data.pipeline",
    "make_dataset": "keras_metaopt.data.pipeline",
    "mix_languages": "keras_metaopt.data.pipeline",
    "pairs_to_dataset": "keras_metaopt.data.pipeline",
    "trim_to_longest": "keras_metaopt.data.pipeline",
    "SplitSpec": "keras_metaopt.data.split_spec",
    "parse_split": "keras_metaopt.data.split_spec",
    "read_nli_tsv": "keras_metaopt.data.tsv",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:  # a submodule, e.g. `keras_metaopt.data.tsv`
        try:
            return importlib.import_module(f"keras_metaopt.data.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"keras_metaopt.data.{name}":
                raise
            raise AttributeError(
                f"module 'keras_metaopt.data' has no attribute {name!r}"
            ) from None
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
