"""The files and names that trainers write and serving and tools read: one owner each.

Imports nothing heavy (no TensorFlow, no Keras), so that the serving client
and server can use it. A trained run directory holds:

- `run.json` (`RUN_JSON`): the run's record, written and read by
  `keras_metaopt.run_record`;
- `rates.json` (`RATES_JSON`, meta and fixed-rate runs): `{"format":
  RATES_FORMAT, "mode": ..., "rates": {group: λ}, "rates_param": ...}`;
- `model/` (`MODEL_DIR`): the final classifier as a keras-hub preset;
- `results.json` (`RESULTS_JSON`): per-language accuracy and per-example
  correctness, and `results.md` (`RESULTS_MD`) its table; `meta_stats.json`
  (`META_STATS_JSON`, meta runs): φ's displacement and direction;
- `stage1/` (`STAGE1_DIR`): the English model, a keras-hub preset that other
  runs start from (`--init-from` takes the run directory or this preset);
- `checkpoints/<stage>/` (`CHECKPOINTS_DIR`) while a stage runs, and `tb/`
  (`TB_DIR`), TensorBoard's logs;
- written by the tools and probes: `rates.png` (`RATES_PNG`, tools.plot_rates),
  `probe.json` and `probe.md` (`PROBE_JSON`, `PROBE_MD`).

`RUN_FILES` lists them all (what `--overwrite` removes).

Example:
    >>> from keras_metaopt.formats import LABEL_NAMES, RUN_JSON
    >>> LABEL_NAMES[2], RUN_JSON
    ('contradiction', 'run.json')
"""

import json
import os
import pathlib

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
RESULTS_MD = "results.md"
STAGE1_DIR = "stage1"
CHECKPOINTS_DIR = "checkpoints"
TB_DIR = "tb"
RATES_PNG = "rates.png"
PROBE_JSON = "probe.json"
PROBE_MD = "probe.md"
# The exact meta-gradient's stored inner states, with --offload-states: files
# that live for one window (keras_metaopt.state_file).
EXACT_STATES_DIR = "exact-states"
# keras-hub's name for the task (classifier) config in a preset: a preset
# with it holds a whole classifier, one without it only an encoder.
TASK_JSON = "task.json"

# Every file and directory a run directory may hold (globs; `.tmp` ones are
# written first and renamed into place); what --overwrite removes.
RUN_FILES = (
    RUN_JSON,
    STAGE1_DIR,
    f"{STAGE1_DIR}.tmp",
    MODEL_DIR,
    f"{MODEL_DIR}.tmp",
    RATES_JSON,
    RATES_PNG,
    CHECKPOINTS_DIR,
    TB_DIR,
    RESULTS_JSON,
    RESULTS_MD,
    META_STATS_JSON,
    PROBE_JSON,
    PROBE_MD,
    EXACT_STATES_DIR,
    ".worker-*",
)


def holds_classifier(preset_dir):
    """Whether a keras-hub preset directory holds a whole classifier (its
    task.json), not only an encoder."""
    return (pathlib.Path(preset_dir) / TASK_JSON).is_file()


def stage1_preset(path):
    """The English model's preset named by `--init-from`: a run directory's
    stage1/, or `path` itself (a preset)."""
    path = pathlib.Path(path)
    return path / STAGE1_DIR if (path / STAGE1_DIR).is_dir() else path


def write_json(path, payload, indent=1):
    """Writes `payload` as JSON to `path` atomically: a `.tmp` file beside it,
    renamed into place, so a reader never sees half a file."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=indent) + "\n", encoding="utf-8")
    os.replace(tmp, path)
