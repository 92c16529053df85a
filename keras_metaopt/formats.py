"""The files and names that trainers write and serving and tools read: one owner each.

Imports nothing heavy (no TensorFlow, no Keras), so that the serving client
and server can use it. A trained run directory holds:

- `run.json` (`RUN_JSON`): the run's settings, labels in `LABEL_NAMES` order;
- `rates.json` (`RATES_JSON`, meta and fixed-rate runs): `{"format":
  RATES_FORMAT, "mode": ..., "rates": {group: λ}, "rates_param": ...}`;
- `model/` (`MODEL_DIR`): the final classifier as a keras-hub preset;
- `results.json` (`RESULTS_JSON`): per-language accuracy and per-example
  correctness; `meta_stats.json` (`META_STATS_JSON`, meta runs): φ's
  displacement and direction.

Example:
    >>> from keras_metaopt.formats import LABEL_NAMES, RUN_JSON
    >>> LABEL_NAMES[2], RUN_JSON
    ('contradiction', 'run.json')
"""

LABEL_NAMES = ("entailment", "neutral", "contradiction")
"""Label id i is `LABEL_NAMES[i]`: entailment=0, neutral=1, contradiction=2."""

NUM_LABELS = len(LABEL_NAMES)

# v1 files without "rates_param" were written with the sigmoid (rates in [0, 1]).
RATES_FORMAT = "keras_metaopt.rates.v1"

RUN_JSON = "run.json"
RATES_JSON = "rates.json"
MODEL_DIR = "model"
RESULTS_JSON = "results.json"
META_STATS_JSON = "meta_stats.json"
