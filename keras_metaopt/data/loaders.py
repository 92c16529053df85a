"""One entry point, `load_pairs`, for every NLI data source the trainers use."""

import collections
import logging
import pathlib
import re

from keras_metaopt.data.split_spec import SplitSpec
from keras_metaopt.data.tfds_source import (
    TFDS_DATASETS,
    XNLI_LANGUAGES,
    load_tfds_pairs,
    resolve_tfds_name,
)
from keras_metaopt.data.tsv import read_column_values, read_nli_tsv

logger = logging.getLogger(__name__)

TSV_LAYOUT = "tsv"
OFFICIAL_LAYOUT = "official"
XNLI_DIR_NAME = "XNLI-1.0"
XNLI_MT_DIR_NAME = "XNLI-MT-1.0"
TFDS_SOURCES = ("tfds", *(f"tfds:{name}" for name in TFDS_DATASETS))

_TSV_FILE_RE = re.compile(r"^(?P<split>[^.]+)\.(?P<lang>[^.]+)\.tsv$")
_LANG_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_OFFICIAL_FILES = {
    "dev": "xnli.dev.tsv",
    "validation": "xnli.dev.tsv",
    "test": "xnli.test.tsv",
}
_LAYOUT_HELP = (
    f"expected either files '{{split}}.{{lang}}.tsv' (e.g. dev.en.tsv) or the "
    f"official '{XNLI_DIR_NAME}/' (xnli.dev.tsv, xnli.test.tsv) and/or "
    f"'{XNLI_MT_DIR_NAME}/' (multinli/multinli.train.{{lang}}.tsv) directories"
)


def _candidates(root, name):
    # The directory itself, DIR/NAME, or DIR/NAME/NAME (as keras.utils.get_file
    # extracts an archive whose top-level folder is NAME).
    return (root, root / name, root / name / name)


def find_xnli_dir(root):
    """The `XNLI-1.0` directory (xnli.dev.tsv, xnli.test.tsv) under `root`, or None."""
    for path in _candidates(pathlib.Path(root), XNLI_DIR_NAME):
        if any((path / name).is_file() for name in set(_OFFICIAL_FILES.values())):
            return path
    return None


def find_xnli_mt_train_dir(root):
    """The `XNLI-MT-1.0/multinli` directory under `root`, or None."""
    for path in _candidates(pathlib.Path(root), XNLI_MT_DIR_NAME):
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.name.lower() == "multinli" and child.is_dir():
                    return child
    return None


def _tsv_files(root):
    found = collections.defaultdict(dict)
    for path in sorted(pathlib.Path(root).iterdir()):
        match = _TSV_FILE_RE.match(path.name)
        if match and path.is_file():
            found[match["split"]][match["lang"]] = path
    return found


def detect_layout(data_dir):
    """`'official'` (XNLI-1.0/ and/or XNLI-MT-1.0/) or `'tsv'` ({split}.{lang}.tsv).

    Raises FileNotFoundError for a missing directory and ValueError when
    neither layout is present.

    Usage (needs the XNLI data directory):

        detect_layout("/work/shared/data/xnli")  # 'tsv'
    """
    root = pathlib.Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {str(root)!r} does not exist")
    if find_xnli_dir(root) or find_xnli_mt_train_dir(root):
        return OFFICIAL_LAYOUT
    if _tsv_files(root):
        return TSV_LAYOUT
    raise ValueError(f"unrecognised data directory {str(root)!r}: {_LAYOUT_HELP}")


def _describe(files):
    return "; ".join(
        f"{split}: {' '.join(sorted(langs))}" for split, langs in sorted(files.items())
    )


def _resolve_tsv(root, split_name, lang):
    files = _tsv_files(root)
    for name in (split_name, "dev" if split_name == "validation" else None):
        if name in files and lang in files[name]:
            return files[name][lang]
    raise FileNotFoundError(
        f"no file {split_name}.{lang}.tsv in {str(root)!r}; available "
        f"(split: languages): {_describe(files)}"
    )


def _resolve_official(root, split_name, lang):
    """`(path, language filter)` of a split in the official layout."""
    if split_name == "train":
        train_dir = find_xnli_mt_train_dir(root)
        path = train_dir / f"multinli.train.{lang}.tsv" if train_dir else None
        if path is None or not path.is_file():
            langs = sorted(
                p.name.split(".")[2]
                for p in (train_dir.glob("multinli.train.*.tsv") if train_dir else [])
            )
            raise FileNotFoundError(
                f"no {XNLI_MT_DIR_NAME}/multinli/multinli.train.{lang}.tsv under "
                f"{str(root)!r}; training languages found: {' '.join(langs) or 'none'}"
            )
        return path, None
    if split_name not in _OFFICIAL_FILES:
        raise ValueError(
            f"unknown split {split_name!r} for the official XNLI layout; use "
            "dev (or validation), test, or train (XNLI-MT-1.0)"
        )
    xnli_dir = find_xnli_dir(root)
    path = xnli_dir / _OFFICIAL_FILES[split_name] if xnli_dir else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"no {XNLI_DIR_NAME}/{_OFFICIAL_FILES[split_name]} under {str(root)!r}"
        )
    return path, lang


def list_languages(source, split="dev"):
    """Languages available for `split` in a data directory or TFDS source.

    Usage (needs the XNLI data directory):

        list_languages("/work/shared/data/xnli", "train_mt")
        # ['ar', 'de', 'en', 'es', 'fr', 'sw', 'tr', 'ur', 'vi', 'zh']
    """
    name = SplitSpec.parse(split).name
    if str(source) in TFDS_SOURCES:
        dataset = resolve_tfds_name(str(source), name)
        return ["en"] if dataset == "multi_nli" else list(XNLI_LANGUAGES)
    root = pathlib.Path(source)
    if detect_layout(root) == TSV_LAYOUT:
        files = _tsv_files(root)
        return sorted(
            files.get(name) or files.get("dev" if name == "validation" else "", {})
        )
    if name == "train":
        train_dir = find_xnli_mt_train_dir(root)
        paths = train_dir.glob("multinli.train.*.tsv") if train_dir else []
        return sorted(p.name.split(".")[2] for p in paths)
    path, _ = _resolve_official(root, name, "en")
    return sorted(read_column_values(path, "language"))


def load_pairs(
    source, split="dev", lang="en", *, skip_bad_rows=False, tfds_data_dir=None
):
    """Loads one split (TFDS-style spec) of one language as `NliPairs`.

    `source` is a data directory (layout detected with `detect_layout`), or
    `'tfds'` (multi_nli for `train`, xnli otherwise), `'tfds:xnli'` or
    `'tfds:multi_nli'` (online; fails within seconds with `OfflineError`
    when the network is unreachable). Split names: in a TSV directory the
    `{split}` part of `{split}.{lang}.tsv`; in the official layout `dev`,
    `test` (XNLI-1.0) and `train` (XNLI-MT-1.0); for TFDS `train`, `dev`,
    `test`. The slice (`dev[:1245]`, `train[:10%]`, ...) applies to the rows
    of that language in file order, after any skipped bad rows are removed.
    Malformed rows raise `DataFormatError` naming file:line, or with
    `skip_bad_rows=True` are dropped, counted and logged.

    Usage (needs the XNLI data directory):

        aux = load_pairs("/work/shared/data/xnli", "dev[:1245]", "de")
        len(aux), aux.labels[:3]  # (1245, [1, 2, 0])
    """
    spec = SplitSpec.parse(split)
    if not isinstance(lang, str) or not _LANG_RE.match(lang):
        raise ValueError(f"language must be a code such as 'en' or 'de', got {lang!r}")
    if str(source) in TFDS_SOURCES:
        dataset = resolve_tfds_name(str(source), spec.name)
        pairs = load_tfds_pairs(
            dataset,
            spec.name,
            lang,
            data_dir=tfds_data_dir,
            skip_bad_rows=skip_bad_rows,
        )
    else:
        root = pathlib.Path(source)
        if detect_layout(root) == TSV_LAYOUT:
            path, filter_lang = _resolve_tsv(root, spec.name, lang), None
        else:
            path, filter_lang = _resolve_official(root, spec.name, lang)
        pairs = read_nli_tsv(path, filter_lang, skip_bad_rows=skip_bad_rows)
        if filter_lang is not None and not len(pairs) and not pairs.num_skipped:
            present = " ".join(sorted(read_column_values(path, "language")))
            raise ValueError(
                f"{str(path)!r} has no rows for language {lang!r}; languages: {present}"
            )
    start, stop = spec.bounds(len(pairs))
    result = pairs[start:stop]
    result.language = lang
    result.source = f"{pairs.source} {spec}"
    logger.info(
        "Loaded %d %s pairs from %s (rows %d:%d of %d; labels e/n/c %s)",
        len(result),
        lang,
        pairs.source,
        start,
        stop,
        len(pairs),
        "/".join(map(str, result.label_counts())),
    )
    return result
