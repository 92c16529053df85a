"""The data layer: loading NLI pairs from any source, and the tf.data pipeline.

Usage:
    >>> from keras_metaopt import data
    >>> pairs = data.load_pairs("/work/shared/data/xnli", "dev[:1245]", "de")
    >>> pre = keras_hub.models.TextClassifierPreprocessor.from_preset(
    ...     "bert_base_multi", sequence_length=128)
    >>> ds = data.make_dataset(pairs, pre, 32, shuffle=True, seed=0)
"""

from keras_metaopt.data.data_format_error import DataFormatError
from keras_metaopt.data.download import XNLI_URLS, download_xnli
from keras_metaopt.data.labels import LABEL_NAMES, NUM_LABELS, label_id
from keras_metaopt.data.loaders import detect_layout, list_languages, load_pairs
from keras_metaopt.data.network import network_error
from keras_metaopt.data.nli_pairs import NliPairs
from keras_metaopt.data.offline_error import OfflineError
from keras_metaopt.data.pipeline import (
    make_dataset,
    mix_languages,
    pairs_to_dataset,
    trim_to_longest,
)
from keras_metaopt.data.split_spec import SplitSpec, parse_split
from keras_metaopt.data.tsv import read_nli_tsv

__all__ = [
    "LABEL_NAMES",
    "NUM_LABELS",
    "XNLI_URLS",
    "DataFormatError",
    "NliPairs",
    "OfflineError",
    "SplitSpec",
    "detect_layout",
    "download_xnli",
    "label_id",
    "list_languages",
    "load_pairs",
    "make_dataset",
    "mix_languages",
    "network_error",
    "pairs_to_dataset",
    "parse_split",
    "read_nli_tsv",
    "trim_to_longest",
]
