"""Where a run writes, whether it may, and whether a rerun may reuse it.

The resume policy: a run directory that holds a run is reused only when the
run's stored settings (`run.json`) equal the new command line's, except for
`RESUME_SAFE` flags; `--overwrite` starts afresh.
"""

import json
import logging
import os
import pathlib
import tempfile

from keras_metaopt.formats import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    RATES_JSON,
    RUN_JSON,
    STAGE1_DIR,
)
from keras_metaopt.run_record import RUN_ARGS, read_run_record

logger = logging.getLogger("keras_metaopt.trainers")


# Flags that cannot change what a run computes: a rerun that differs from the
# stored run.json only in these resumes the run. Every other flag of the
# parser -- including any flag added later -- is result-changing.
# state_every, offload_states: the exact meta-gradient's memory/recomputation
# trade-off; the results are bit-identical for every k, in memory or in files
# (tests/keras_metaopt/test_exact_meta_gradient.py).
RESUME_SAFE = frozenset(
    {
        "output_dir",
        "overwrite",
        "log_level",
        "log_every",
        "checkpoint_every",
        "state_every",
        "offload_states",
        "method_name",  # a label: the results are the same
    }
)
# Path flags: equal when they are the same string or name the same place.
PATH_FLAGS = frozenset({"data_dir", "preset", "init_from", "rates_from"})

# formats.RUN_FILES.
RUN_ARTIFACTS = (STAGE1_DIR, MODEL_DIR, RATES_JSON, f"{CHECKPOINTS_DIR}/*/checkpoint")


def option_name(parser, dest):
    """The long option of `parser` whose destination is `dest`."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    return "--" + dest.replace("_", "-")


def run_directory(args):
    """Where this process writes: --output-dir, or a non-chief worker's copy.

    Under MultiWorkerMirroredStrategy every worker runs everything; only the
    chief writes the run directory, the others `.worker-<type>-<id>/` in it.
    The worker comes from TF_CONFIG, as TensorFlow's cluster resolver reads it.
    """
    path = pathlib.Path(args.output_dir)
    if getattr(args, "strategy", None) != "multiworker":
        return path
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return path
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if not kind or kind == "chief":
        return path
    if kind == "worker" and index == 0 and "chief" not in config.get("cluster", {}):
        return path
    return path / f".worker-{kind}-{index}"


def check_output_dir(run_dir):
    if run_dir.exists():
        if not run_dir.is_dir():
            return [f"--output-dir {run_dir}: exists and is not a directory"]
        if not can_create_in(run_dir):
            return [f"--output-dir {run_dir}: not writable"]
        return []
    parent = run_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [
            f"--output-dir {run_dir}: cannot be created: {parent} is not a directory"
        ]
    if not can_create_in(parent):
        return [f"--output-dir {run_dir}: cannot be created: {parent} is not writable"]
    return []


def can_create_in(directory):
    """Whether an entry can be made in `directory`: one is made and removed.

    `os.access` cannot tell: as root it says yes for /proc, /sys or a
    read-only mount, and the run would fail later, after the checks.
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=directory))
    except OSError:
        return False
    return True


def has_artifacts(run_dir):
    return any(any(run_dir.glob(pattern)) for pattern in RUN_ARTIFACTS)


def _same(dest, old, new):
    if old == new:
        return True
    if dest in PATH_FLAGS and isinstance(old, str) and isinstance(new, str):
        return os.path.realpath(old) == os.path.realpath(new)
    return False


# A flag whose value is unused while another one is set: a stage's length in
# epochs when its length in steps is given.
OVERRIDDEN_BY = {"en_epochs": "en_steps", "aux_epochs": "aux_steps"}


def overridden(args):
    """The flags of `args` (a dict of flags) that change nothing there."""
    return {dest for dest, by in OVERRIDDEN_BY.items() if args.get(by) is not None}


def differing_flags(parser, stored, new):
    """`[(dest, stored value, new value)]` of result-changing differences.

    A flag missing from the stored arguments (added to the code after the run
    was made) counts as equal only if its new value is the flag's default: a
    new flag's default is taken to be what the code did before it existed.
    Stored flags that the parser no longer has are ignored (logged), and so
    is a flag that both leave unused (`OVERRIDDEN_BY`).
    """
    missing = object()
    differ = []
    unused = overridden(stored) & overridden(new)  # e.g. --en-epochs under --en-steps
    for dest, value in sorted(new.items()):
        if dest in RESUME_SAFE or dest in unused:
            continue
        old = stored.get(dest, missing)
        if old is missing:
            if value != parser.get_default(dest):
                differ.append((dest, "(not recorded)", value))
        elif not _same(dest, old, value):
            differ.append((dest, old, value))
    gone = sorted(set(stored) - set(new))
    if gone:
        logger.warning("run.json records flags this code no longer has: %s", gone)
    return differ


def _show(value):
    return "''" if value == "" else str(value)


def check_settings(parser, args, run_dir):
    """`(problems, fresh)`: may this run directory be (re)used with `args`?"""
    if not run_dir.is_dir() or getattr(args, "overwrite", False):
        return [], True
    path = run_dir / RUN_JSON
    if not path.is_file():
        if has_artifacts(run_dir):
            return [
                f"--output-dir {run_dir}: holds checkpoints or models but no "
                "run.json, so its settings are unknown; add --overwrite to start "
                "afresh, or choose another --output-dir"
            ], True
        return [], True
    try:
        stored = read_run_record(run_dir)[RUN_ARGS]
        if not isinstance(stored, dict):
            raise ValueError("'args' is not an object")
    except (ValueError, KeyError) as err:
        return [
            f"{path}: unreadable or without recorded arguments ({err}); add "
            "--overwrite to start afresh, or choose another --output-dir"
        ], False
    differ = differing_flags(parser, stored, vars(args))
    if not differ:
        return [], False
    flags = ", ".join(
        f"{option_name(parser, d)} {_show(new)} (run: {_show(old)})"
        for d, old, new in differ
    )
    return [
        f"--output-dir {run_dir}: holds a run made with other settings: {flags}; "
        "rerun with the run's settings to resume, add --overwrite to start "
        "afresh, or choose another --output-dir"
    ], False


def check_output_file(path, flag):
    """A problem if file `path` cannot be written (its directory must exist)."""
    path = pathlib.Path(path)
    if path.is_dir():
        return [f"{flag} {path}: is a directory"]
    parent = path.parent
    if not parent.is_dir():
        return [f"{flag} {path}: directory {parent} does not exist"]
    if not can_create_in(parent) or (path.exists() and not os.access(path, os.W_OK)):
        return [f"{flag} {path}: not writable"]
    return []
