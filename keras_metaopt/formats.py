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

import json
import pathlib

LABEL_NAMES = ("entailment", "neutral", "contradiction")
"""Label id i is `LABEL_NAMES[i]`: entailment=0, neutral=1, contradiction=2."""

NUM_LABELS = len(LABEL_NAMES)

# v1 files without "rates_param" were written with the sigmoid (rates in [0, 1]).
RATES_FORMAT = "keras_metaopt.rates.v1"

RUN_JSON = "run.json"
RUN_COMMAND = "command"  # run.json: the command line that resumes the run
RATES_JSON = "rates.json"
MODEL_DIR = "model"
RESULTS_JSON = "results.json"
META_STATS_JSON = "meta_stats.json"


def unfinished_run(run_dir, missing):
    """One line for a run directory whose `missing` part is not written yet:
    the run has not finished, and how to resume it (the command run.json
    records). None if `run_dir` is not a run directory (no run.json)."""
    path = pathlib.Path(run_dir)
    try:
        command = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
        command = command.get(RUN_COMMAND) if isinstance(command, dict) else None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError):
        command = None
    how = (
        f"resume it with: {command}"
        if command
        else f"resume it by rerunning its trainer command with --output-dir {path}"
    )
    return f"run {path} has not finished: no {missing} yet; {how}"
