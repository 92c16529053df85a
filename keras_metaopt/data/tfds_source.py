"""TFDS `xnli` and `multi_nli` as `NliPairs` (needs the network the first time)."""

import logging

from keras_metaopt.data.data_format_error import DataFormatError
from keras_metaopt.data.labels import label_id
from keras_metaopt.data.network import require_network
from keras_metaopt.data.nli_pairs import NliPairs

logger = logging.getLogger(__name__)

# TFDS builder name -> (URL its download step fetches, {our split: TFDS split}).
TFDS_DATASETS = {
    "xnli": (
        "https://cims.nyu.edu/~sbowman/xnli/XNLI-1.0.zip",
        {"dev": "validation", "validation": "validation", "test": "test"},
    ),
    "multi_nli": (
        "https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip",
        {
            "train": "train",
            "dev": "validation_matched",
            "validation": "validation_matched",
            "validation_matched": "validation_matched",
            "validation_mismatched": "validation_mismatched",
        },
    ),
}
XNLI_LANGUAGES = (
    "ar bg de el en es fr hi ru sw th tr ur vi zh".split()  # TFDS xnli languages.
)


def resolve_tfds_name(source, split_name):
    """TFDS builder name for `source` ('tfds', 'tfds:xnli', 'tfds:multi_nli').

    Plain 'tfds' means multi_nli for `train` and xnli otherwise.
    """
    if source == "tfds":
        return "multi_nli" if split_name == "train" else "xnli"
    name = source.split(":", 1)[1]
    if name not in TFDS_DATASETS:
        raise ValueError(
            f"unknown TFDS source {source!r}; use 'tfds', 'tfds:xnli' or "
            "'tfds:multi_nli'"
        )
    return name


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _texts(name, example, lang):
    """`(premise, hypothesis)` of one TFDS example ('' where missing)."""
    if name != "xnli":
        return _text(example["premise"]), _text(example["hypothesis"])
    # xnli: premise is {lang: text}; hypothesis is {language: [...],
    # translation: [...]} with the languages in no fixed order.
    premise = example["premise"].get(lang, b"")
    languages = [_text(x) for x in example["hypothesis"]["language"]]
    translations = example["hypothesis"]["translation"]
    hypothesis = translations[languages.index(lang)] if lang in languages else b""
    return _text(premise), _text(hypothesis)


def load_tfds_pairs(name, split_name, lang, *, data_dir=None, skip_bad_rows=False):
    """All rows of one TFDS split and language as `NliPairs` (no slicing).

    Downloads and prepares the dataset on first use. If it is not prepared in
    `data_dir` yet, the download server is probed first, and `OfflineError`
    (naming the offline alternatives) is raised within seconds if it is
    unreachable. TFDS label ints are mapped to the canonical ids by name.
    Rows come in TFDS's order, which is not the order of the original files.

    Usage (needs the network on the first call):

        pairs = load_tfds_pairs("xnli", "dev", "de")
    """
    import tensorflow_datasets as tfds

    url, splits = TFDS_DATASETS[name]
    if split_name not in splits:
        raise ValueError(
            f"TFDS {name!r} has no split {split_name!r}; use one of {sorted(splits)}"
        )
    if name == "multi_nli" and lang != "en":
        raise ValueError(
            f"TFDS multi_nli is English only (asked for {lang!r}); for "
            "machine-translated training data use the XNLI-MT-1.0 directory "
            "(keras_metaopt.data.download_xnli()) or a TSV directory"
        )
    if name == "xnli" and lang not in XNLI_LANGUAGES:
        raise ValueError(
            f"TFDS xnli has no language {lang!r}; languages: {' '.join(XNLI_LANGUAGES)}"
        )
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        require_network(url, f"TFDS {name!r} (not prepared in {builder.data_dir})")
        logger.info("Downloading and preparing TFDS %s into %s", name, builder.data_dir)
        builder.download_and_prepare()
    tfds_split = splits[split_name]
    where = f"tfds:{name}/{tfds_split}"
    label_names = builder.info.features["label"].names
    to_canonical = [label_id(label) for label in label_names]
    premises, hypotheses, labels, bad = [], [], [], []
    for index, example in enumerate(
        tfds.as_numpy(builder.as_dataset(split=tfds_split))
    ):
        premise, hypothesis = _texts(name, example, lang)
        raw = int(example["label"])
        label = to_canonical[raw] if 0 <= raw < len(to_canonical) else None
        problem = None
        if label is None:
            problem = f"unknown label {raw}"
        elif not premise.strip() or not hypothesis.strip():
            problem = "empty premise or hypothesis"
        if problem:
            if not skip_bad_rows:
                raise DataFormatError(where, f"example {index}", problem)
            bad.append(f"example {index}: {problem}")
            continue
        premises.append(premise)
        hypotheses.append(hypothesis)
        labels.append(label)
    if bad:
        logger.warning(
            "Skipped %d malformed example(s) in %s: %s", len(bad), where, bad[:5]
        )
    return NliPairs(premises, hypotheses, labels, lang, where, num_skipped=len(bad))
