"""The one canonical NLI label order, shared by every source.

Usage:
    >>> from keras_metaopt.data.labels import LABEL_NAMES, label_id
    >>> LABEL_NAMES[label_id("contradictory")]
    'contradiction'
"""

from keras_metaopt.formats import LABEL_NAMES, NUM_LABELS

__all__ = ["LABEL_NAMES", "NUM_LABELS", "label_id"]

_IDS = {name: i for i, name in enumerate(LABEL_NAMES)}
_IDS["contradictory"] = _IDS["contradiction"]  # XNLI-MT-1.0 spelling.


def label_id(name):
    """Canonical id of a label name, or None if the name is not a known label.

    Case and surrounding whitespace are ignored; `contradictory` (XNLI-MT) means
    contradiction. Integers are deliberately not accepted: sources disagree on
    their order, so a label must be given by name.
    """
    return _IDS.get(str(name).strip().lower())
