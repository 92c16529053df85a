"""The in-memory container of premise/hypothesis/label triples."""

import dataclasses

from keras_metaopt.data.labels import NUM_LABELS


@dataclasses.dataclass
class NliPairs:
    """Premise/hypothesis pairs of one language with canonical int labels.

    Labels use the canonical order of `keras_metaopt.data.labels.LABEL_NAMES`
    (entailment=0, neutral=1, contradiction=2). Text is kept exactly as read.
    `source` says where the rows came from (file and split spec);
    `num_skipped` counts malformed rows dropped with `skip_bad_rows=True`.

    Usage:
        >>> pairs = NliPairs(["A man sleeps."], ["Someone rests."], [0], "en", "demo")
        >>> len(pairs), pairs[0:1].labels
        (1, [0])
    """

    premises: list
    hypotheses: list
    labels: list
    language: str
    source: str
    num_skipped: int = 0

    def __post_init__(self):
        sizes = {len(self.premises), len(self.hypotheses), len(self.labels)}
        if len(sizes) != 1:
            raise ValueError(
                f"premises, hypotheses and labels differ in length: "
                f"{len(self.premises)}, {len(self.hypotheses)}, {len(self.labels)}"
            )
        bad = [x for x in self.labels if x not in range(NUM_LABELS)]
        if bad:
            raise ValueError(
                f"labels must be ints in [0, {NUM_LABELS}); got {bad[0]!r}"
            )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        """`pairs[i:j]` is a new `NliPairs` with those rows (slices only)."""
        if not isinstance(index, slice):
            raise TypeError("NliPairs supports slicing only, e.g. pairs[10:20]")
        return dataclasses.replace(
            self,
            premises=self.premises[index],
            hypotheses=self.hypotheses[index],
            labels=self.labels[index],
        )

    def label_counts(self):
        """Number of rows per canonical label id, as a list of length 3."""
        counts = [0] * NUM_LABELS
        for label in self.labels:
            counts[label] += 1
        return counts
