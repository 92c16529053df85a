"""A trainer's whole input, checked before any model is built.

`check(parser, args, trainer)` looks at everything the command will need and
returns every problem found, one line each, and the `Plan` of the run:

- numbers in range (`RANGES`, applied to every flag of that name the parser
  has, so a trainer's own flags join by name), languages, precision;
- the preset (`trainers.preset_checks`): no weights are loaded;
- the output directory and, if it holds a run, the resume policy
  (`trainers.output_checks`);
- the data of every stage that will run (`trainers.data_checks`; stages
  already complete in the run directory are not re-checked). The pairs read
  here are kept in the plan (`Plan.pairs`), so the trainer does not read
  them again.

`start(plan, args)` then makes the directory ready (`--overwrite`).
"""

import dataclasses
import logging
import math
import pathlib
import shutil

from keras_metaopt import LayerGroups
from keras_metaopt.formats import (
    MODEL_DIR,
    RATES_JSON,
    RESULTS_JSON,
    RUN_FILES,
    STAGE1_DIR,
    TASK_JSON,
    stage1_preset,
)
from keras_metaopt.run_record import unfinished_run
from trainers.data_checks import check_data, data_summary
from trainers.output_checks import (
    check_output_dir,
    check_settings,
    option_name,
    run_directory,
)
from trainers.preset_checks import check_model_facts, check_preset, check_rates_from

logger = logging.getLogger("keras_metaopt.trainers")

# Stages in order: the file a finished stage leaves (relative to the run
# directory), and its checkpoint directory is checkpoints/<stage>.
STAGE_OUTPUT = {
    "en": f"{STAGE1_DIR}/{TASK_JSON}",
    "meta": RATES_JSON,
    "aux": f"{MODEL_DIR}/{TASK_JSON}",
}
# What makes a directory a run worth keeping (globs). What --overwrite removes:

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
    "aux_seed": (lambda x: 0 <= x < 2**32, "in [0, 2^32)"),
    "sequence_length": (lambda x: x >= 3, ">= 3"),
    "rounds": (lambda x: x >= 0, ">= 0"),
    "meta_interval": (lambda x: x >= 1, ">= 1"),
    "meta_updates_per_round": (lambda x: x >= 1, ">= 1"),
    "meta_lr": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "state_every": (lambda x: x >= 1, ">= 1"),
    "hvp_micro_batches": (lambda x: x >= 1, ">= 1"),
    "meta_clipnorm": (lambda x: math.isfinite(x) and x > 0, "a number > 0"),
    "freeze_bottom": (lambda x: x >= 0, ">= 0"),
    "layer_decay": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "method_name": (
        lambda x: x.strip() == x and x and "/" not in x and x.isprintable(),
        "a non-empty name without '/', surrounding spaces or control characters",
    ),
}


@dataclasses.dataclass
class Plan:
    """What a validated trainer run will do."""

    trainer: str
    run_dir: pathlib.Path
    fresh: bool  # no run.json yet (or --overwrite): it is written
    status: dict  # stage: complete / resumed / new / skipped
    pairs: dict = dataclasses.field(default_factory=dict)  # (split, lang): read
    data: str = ""  # what was read, one line (`data_summary`)
    command: str = ""  # the command line that resumes the run (run.json)


def check(parser, args, trainer):
    """Every problem of a `trainers.{trainer}` command line; `(problems, plan)`."""
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
    problems += check_rates_from(args, facts)
    run_dir = run_directory(args)
    output_problems = check_output_dir(run_dir)
    problems += output_problems
    fresh, status = True, {}
    if not output_problems:
        settings_problems, fresh = check_settings(parser, args, run_dir)
        problems += settings_problems
        status = stage_status(args, trainer, aux, run_dir, fresh)
    pairs = {}
    if not any(p.startswith("--data-dir") for p in problems):
        problems += check_data(args, aux, status, pairs)
    plan = Plan(trainer, run_dir, fresh, status, pairs, data_summary(pairs))
    return problems, plan


# ---- numbers and names ---------------------------------------------------
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
    if getattr(args, "recompute_layers", False) and args.meta_gradient != "exact":
        problems.append(
            "--recompute-layers: only with --meta-gradient exact (it recomputes "
            "the layers in the exact meta-gradient's Hessian-vector products)"
        )
    if getattr(args, "offload_states", False) and args.meta_gradient != "exact":
        problems.append(
            "--offload-states: only with --meta-gradient exact (it keeps the "
            "exact meta-gradient's stored inner states in files)"
        )
    micro = getattr(args, "hvp_micro_batches", 1)
    if micro != 1 and args.meta_gradient != "exact":
        problems.append(
            f"--hvp-micro-batches {micro}: only with --meta-gradient exact (it "
            "splits the exact meta-gradient's Hessian-vector products)"
        )
    elif micro > args.batch_size >= 1:
        problems.append(
            f"--hvp-micro-batches {micro}: must be <= --batch-size "
            f"({args.batch_size}), the rows it splits"
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


# ---- stages ---------------------------------------------------------------
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
