"""`run.json`, a run directory's record: the one writer and the one reader.

The trainers write it when a run starts (`make_run_record`, `write_run_record`);
the input checks, reports, tools and serving read it (`read_run_record`,
`recorded_args`). Imports nothing heavy (no TensorFlow, no Keras). Its keys:

- `method`, `preset`, `train_languages` (English first), `aux`, `labels` (in
  `LABEL_NAMES` order), `sequence_length`, `seed`: what serving reports;
- `args`: every flag of the trainer's command line (what a rerun must match);
- `command` (`RUN_COMMAND`): the command line that resumes the run.

Example:
    >>> import tempfile
    >>> from keras_metaopt.run_record import make_run_record, read_run_record
    >>> from keras_metaopt.run_record import write_run_record
    >>> run_dir = tempfile.mkdtemp()
    >>> record = make_run_record(method="finetune", preset="p", aux=["el"],
    ...                          sequence_length=64, seed=0)
    >>> write_run_record(run_dir, record)
    >>> read_run_record(run_dir)["train_languages"]
    ['en', 'el']
"""

import json
import pathlib

from keras_metaopt.formats import LABEL_NAMES, RUN_JSON, write_json

RUN_ARGS = "args"  # run.json: the trainer's flags
RUN_COMMAND = "command"  # run.json: the command line that resumes the run


def make_run_record(
    *, method, preset, aux, sequence_length, seed, args=None, command=None
):
    """The run.json payload of a run."""
    record = {
        "method": method,
        "preset": preset,
        "train_languages": ["en", *aux],
        "aux": list(aux),
        "labels": list(LABEL_NAMES),
        "sequence_length": sequence_length,
        "seed": seed,
    }
    if args is not None:
        record[RUN_ARGS] = args
    if command:
        record[RUN_COMMAND] = command
    return record


def write_run_record(run_dir, record):
    """Writes `record` as RUN_DIR/run.json, atomically."""
    write_json(pathlib.Path(run_dir) / RUN_JSON, record)


def read_run_record(run_dir):
    """RUN_DIR/run.json as a dict; ValueError saying what is wrong (missing,
    unreadable, not a JSON object)."""
    path = pathlib.Path(run_dir) / RUN_JSON
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return record


def recorded_args(run_dir):
    """The flags run.json records, or None (no run.json, unreadable, none)."""
    try:
        args = read_run_record(run_dir).get(RUN_ARGS)
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


def unfinished_run(run_dir, missing):
    """One line for a run directory whose `missing` part is not written yet:
    the run has not finished, and how to resume it (the command run.json
    records). None if `run_dir` is not a run directory (no run.json)."""
    path = pathlib.Path(run_dir)
    if not (path / RUN_JSON).exists():
        return None
    try:
        command = read_run_record(path).get(RUN_COMMAND)
    except ValueError:
        command = None
    how = (
        f"resume it with: {command}"
        if command
        else f"resume it by rerunning its trainer command with --output-dir {path}"
    )
    return f"run {path} has not finished: no {missing} yet; {how}"
