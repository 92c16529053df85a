"""Read premise/hypothesis pairs from a TSV file, with file:line errors."""

import csv
from pathlib import Path

from keras_metaopt.formats import LABEL_NAMES as LABELS


class PairTsv:
    """A TSV of pairs: header ``premise<TAB>hypothesis[<TAB>label]``, no quoting.

    Fields are split on tabs only (``csv.QUOTE_NONE``: quotes are plain text).
    Labels may be names (``entailment``) or indices (``0``); they are read as
    indices. Every problem raises ``ValueError("FILE:LINE: what is wrong")``.

    Example:
        >>> pairs = PairTsv("dev.tsv")
        >>> pairs.premises[0], pairs.hypotheses[0], pairs.labels[0]
        ('A man plays.', 'A man is playing.', 0)
    """

    def __init__(self, path, max_field_bytes: int = 10_000):
        self.path = Path(path)
        self.premises: list[str] = []
        self.hypotheses: list[str] = []
        self.labels: list[int] | None = None
        self.line_numbers: list[int] = []
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read {self.path}: {err.strerror}") from None
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if not lines:
            raise ValueError(f"{self.path}: empty file (expected a header line)")
        for number, line in enumerate(lines, start=1):
            where = f"{self.path}:{number}"
            try:
                text = line.decode("utf-8").removesuffix("\r")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{where}: not valid UTF-8 (byte 0x{line[err.start]:02x} at "
                    f"column {err.start + 1})"
                ) from None
            fields = next(csv.reader([text], delimiter="\t", quoting=csv.QUOTE_NONE))
            if number == 1:
                self._header(fields, where)
                continue
            self._row(fields, where, max_field_bytes)
            self.line_numbers.append(number)

    def _header(self, fields: list[str], where: str) -> None:
        header = [f.strip().lower() for f in fields]
        if header not in (
            ["premise", "hypothesis"],
            ["premise", "hypothesis", "label"],
        ):
            raise ValueError(
                f"{where}: header must be 'premise<TAB>hypothesis' or "
                f"'premise<TAB>hypothesis<TAB>label'; got {chr(9).join(fields)!r}"
            )
        if len(header) == 3:
            self.labels = []

    def _row(self, fields: list[str], where: str, max_field_bytes: int) -> None:
        want = 2 if self.labels is None else 3
        if len(fields) != want:
            names = "premise, hypothesis" + (", label" if want == 3 else "")
            raise ValueError(
                f"{where}: expected {want} tab-separated fields ({names}); "
                f"got {len(fields)}"
            )
        for name, value in zip(("premise", "hypothesis"), fields, strict=False):
            if len(value.encode("utf-8")) > max_field_bytes:
                raise ValueError(
                    f"{where}: {name} is longer than {max_field_bytes} bytes"
                )
        self.premises.append(fields[0])
        self.hypotheses.append(fields[1])
        if self.labels is not None:
            self.labels.append(self.parse_label(fields[2], where))

    @staticmethod
    def parse_label(value: str, where: str) -> int:
        """Map a label name or ``0``/``1``/``2`` to its index."""
        value = value.strip()
        if value.lower() in LABELS:
            return LABELS.index(value.lower())
        if value in ("0", "1", "2"):
            return int(value)
        raise ValueError(
            f"{where}: unknown label {value!r}; expected one of "
            f"{', '.join(LABELS)} (or 0, 1, 2)"
        )

    def __len__(self) -> int:
        return len(self.premises)
