"""Strict reading of NLI TSV files (no quoting; errors name file and line).

The one reader of pair TSVs in the project: the trainers read labelled files
with `read_nli_tsv`, the serving client and `serving.export --check-pairs`
read pairs to predict with `read_pair_tsv`. Both take the same format (header
names, `csv.QUOTE_NONE`, UTF-8) and the same label policy (names only, see
`keras_metaopt.data.labels.label_id`), and fail with the same `path:line`
messages. This module imports neither TensorFlow nor Keras.
"""

import collections
import csv
import dataclasses
import logging

from keras_metaopt.data.data_format_error import DataFormatError
from keras_metaopt.data.labels import LABEL_NAMES, label_id
from keras_metaopt.data.nli_pairs import NliPairs

logger = logging.getLogger(__name__)

# Accepted header names for each field, in order of preference: the per-language
# TSVs (premise, hypothesis, label), XNLI-MT-1.0 (premise, hypo, label) and
# XNLI-1.0 (sentence1, sentence2, gold_label, language).
COLUMN_NAMES = {
    "premise": ("premise", "sentence1"),
    "hypothesis": ("hypothesis", "hypo", "sentence2"),
    "label": ("gold_label", "label"),
}
LANGUAGE_COLUMN = "language"
MAX_REPORTED_ROWS = 5


def _numbered_lines(path):
    """Yields `(line_number, text)` per physical line: UTF-8, no line ending."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataFormatError(path, number, f"not valid UTF-8: {err}") from None
            if text.endswith("\n"):
                text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
            yield number, text


def _rows(path):
    """Yields `(line_number, fields)`, split on tabs with `csv.QUOTE_NONE`.

    Quotes are ordinary characters: a field may begin with `"` and rows never
    merge. Blank lines are yielded as `[]`, except trailing ones at the end of
    the file, which are ignored.
    """
    numbered = _numbered_lines(path)
    current = [0]

    def texts():
        for number, text in numbered:
            current[0] = number
            yield text

    reader = csv.reader(texts(), delimiter="\t", quoting=csv.QUOTE_NONE)
    blank = []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataFormatError(path, current[0], f"unreadable row: {err}") from None
        if not fields:
            blank.append(current[0])
            continue
        for number in blank:
            yield number, []
        blank = []
        yield current[0], fields


def _header_columns(path, header, want_language, label_optional=False):
    names = [name.strip().lower() for name in header]
    columns = {}
    for field, choices in COLUMN_NAMES.items():
        found = [names.index(choice) for choice in choices if choice in names]
        if not found and field == "label" and label_optional:
            continue
        if not found:
            raise DataFormatError(
                path,
                1,
                f"header has no {field} column (accepted names: "
                f"{', '.join(choices)}); header is {header!r}",
            )
        columns[field] = found[0]
    if want_language and LANGUAGE_COLUMN in names:
        columns[LANGUAGE_COLUMN] = names.index(LANGUAGE_COLUMN)
    return columns


def _row_problem(fields, num_columns, columns, allow_empty_text=False):
    if len(fields) != num_columns:
        return (
            "wrong column count",
            f"got {len(fields)} columns, expected {num_columns}",
        )
    label = fields[columns["label"]] if "label" in columns else None
    if label is not None and label_id(label) is None:
        return "unknown label", (
            f"unknown label {label!r} (expected one of {', '.join(LABEL_NAMES)}, "
            "or contradictory)"
        )
    for field in ("premise", "hypothesis"):
        if not allow_empty_text and not fields[columns[field]].strip():
            return f"empty {field}", f"empty {field}"
    return None


def _report_skipped(path, bad_rows, num_rows):
    kinds = collections.Counter(kind for _, kind, _ in bad_rows)
    shown = "; ".join(
        f"{path}:{line}: {detail}" for line, _, detail in bad_rows[:MAX_REPORTED_ROWS]
    )
    more = len(bad_rows) - MAX_REPORTED_ROWS
    logger.warning(
        "Skipped %d malformed row(s) of %d in %s (%s). First: %s%s",
        len(bad_rows),
        num_rows,
        path,
        ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items())),
        shown,
        f"; and {more} more" if more > 0 else "",
    )


def read_nli_tsv(path, language=None, *, skip_bad_rows=False, source=None):
    """Reads one NLI TSV file into `NliPairs`, checking every row.

    The file is UTF-8, tab-separated, read with `csv.QUOTE_NONE` (fields may
    begin with `"`; text is kept exactly, trailing spaces included), with a
    header naming the columns: premise/sentence1, hypothesis/hypo/sentence2,
    label/gold_label, and optionally `language`. If the file has a `language`
    column and `language` is given, only that language's rows are read.

    A malformed row (wrong column count, unknown label, empty premise or
    hypothesis, blank line) raises `DataFormatError` naming `path:line`
    (1-based, header = line 1). With `skip_bad_rows=True` such rows are
    dropped, counted in `NliPairs.num_skipped`, and reported in one logged
    warning with counts per kind and the first few `path:line`s.

    Usage (needs such a file):

        pairs = read_nli_tsv("data/xnli/dev.de.tsv", "de")
        pairs.premises[0], pairs.labels[0]
    """
    path = str(path)
    rows, skipped = _read(path, language, skip_bad_rows, label_optional=False)
    return NliPairs(
        rows.premises,
        rows.hypotheses,
        rows.labels,
        language=language or "",
        source=source or path,
        num_skipped=skipped,
    )


@dataclasses.dataclass
class PairRows:
    """Pairs read by `read_pair_tsv`: texts, labels if the file has them, lines.

    `labels` are canonical ids (`LABEL_NAMES` order), or None when the file has
    no label column; `line_numbers[i]` is row i's line in the file (header = 1).
    """

    premises: list
    hypotheses: list
    labels: list | None
    line_numbers: list

    def __len__(self):
        return len(self.premises)


def read_pair_tsv(path, language=None):
    """Reads pairs to predict: `read_nli_tsv`'s format, the label column optional.

    Every row is checked as `read_nli_tsv` checks it (no rows are skipped),
    except that an empty premise or hypothesis is a pair to predict like any
    other (in training data it is a broken row). A file that cannot be opened
    raises `ValueError("cannot read PATH: why")`.

    Usage (needs such a file):

        rows = read_pair_tsv("pairs.tsv")  # premise<TAB>hypothesis[<TAB>label]
        rows.premises[0], rows.line_numbers[0]
    """
    path = str(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None
    rows, _ = _read(path, language, False, label_optional=True)
    return rows


def _read(path, language, skip_bad_rows, label_optional):
    """`(PairRows, number of skipped rows)` of the TSV at `path`."""
    rows = _rows(path)
    header = next(rows, None)
    if header is None:
        raise DataFormatError(path, 1, "empty file; expected a header line")
    if not header[1]:
        raise DataFormatError(path, 1, "blank line where the header should be")
    header = header[1]
    columns = _header_columns(
        path, header, want_language=language is not None, label_optional=label_optional
    )
    lang_col = columns.get(LANGUAGE_COLUMN)
    labelled = "label" in columns
    out = PairRows([], [], [] if labelled else None, [])
    bad_rows = []
    num_rows = 0
    for line, fields in rows:
        num_rows += 1
        if lang_col is not None and len(fields) == len(header):
            if fields[lang_col] != language:
                continue
        problem = _row_problem(fields, len(header), columns, label_optional)
        if problem is not None:
            if not skip_bad_rows:
                raise DataFormatError(path, line, problem[1])
            bad_rows.append((line, *problem))
            continue
        out.premises.append(fields[columns["premise"]])
        out.hypotheses.append(fields[columns["hypothesis"]])
        if labelled:
            out.labels.append(label_id(fields[columns["label"]]))
        out.line_numbers.append(line)
    if bad_rows:
        _report_skipped(path, bad_rows, num_rows)
    return out, len(bad_rows)


def read_column_values(path, column):
    """Distinct values of a named column, in order of first appearance."""
    path = str(path)
    rows = _rows(path)
    header = next(rows, (1, []))[1]
    names = [name.strip().lower() for name in header]
    if column not in names:
        raise DataFormatError(path, 1, f"header has no {column!r} column")
    index = names.index(column)
    return list(
        dict.fromkeys(fields[index] for _, fields in rows if len(fields) > index)
    )
