"""The xnli-proxy benchmark: every method on the same seeds, resumable.

    python -m benchmarks.xnli_proxy --preset presets/multilingual_e5_small \\
        --data-dir ../shared/data/xnli

Protocol (../shared/data/xnli/README.md): English stage on `train_mt.en`,
auxiliary languages el,ur on `dev[:1245]`, evaluation on `dev[1245:]` of all
15 languages. Per seed, the English model is trained once (method
`english-only`, itself a zero-shot baseline) and every other method starts from
it (`--init-from`). Runs go to `--work-dir` (checkpoints, models: large, not
committed); each finished run's results.json (and rates.json) is copied to
`--results-dir`, which is small and committed. Runs with results are skipped,
and an interrupted run resumes from its checkpoints, so the benchmark can be
continued across sessions. `--table` prints the Table-1-style summary.
"""

import dataclasses
import json
import logging
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

from keras_metaopt import cli
from keras_metaopt.formats import (
    CHECKPOINTS_DIR,
    META_STATS_JSON,
    RATES_JSON,
    RATES_PNG,
    RESULTS_JSON,
    holds_classifier,
    stage1_preset,
)

# trainers.validate and trainers.reporting bring TensorFlow in: they are
# imported where used, so that --help and a bad flag answer at once.

# Every command is built from one dict of flags (flag: value; True for a
# switch), so that no flag is given twice and none is overridden unseen.


class PerSeed:
    """A flag value that depends on the seed of the run (`command` asks it)."""

    def value(self, args, seed):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class RatesOf(PerSeed):
    """The rates that row `row` learned with the same seed (its committed
    rates.json in --results-dir)."""

    row: str

    def path(self, results_dir, seed):
        return pathlib.Path(results_dir) / f"{self.row}-seed{seed}" / RATES_JSON

    def value(self, args, seed):
        return self.path(args.results_dir, seed)


@dataclasses.dataclass(frozen=True)
class SeedPlus(PerSeed):
    """The run's seed plus `offset`."""

    offset: int

    def value(self, args, seed):
        return seed + self.offset


# Issue 11: a meta budget in which φ can move: 100 φ updates (the paper trains
# φ over 10 epochs with L = 15, i.e. hundreds of updates) instead of 12, at
# φ's Adam lr 0.05, so that φ can travel up to 5 from its start.
LONG_META = {"--rounds": 10, "--meta-updates-per-round": 10}
# Issue 23: the fast settings (layers computed in bfloat16, batches grouped by
# length and padded to their own longest pair). Rows are compared only when run
# with the same precision and batching, so the fast ones are rows of their own,
# each starting from an English model trained with the same settings.
FAST = {"--precision": "mixed_bfloat16", "--group-by-length": True}

# The English models (trainers.finetune without auxiliary languages): each is a
# zero-shot row of its own and the start (`--init-from`) of the rows of its seed.
# The "-v2" fast rows: the same flags, run after 17a5b08, which keeps the
# residual stream and the attention softmax of bf16 models in float32 (before
# it, the bf16 English stage lost 2.7 points on seed 1; the rows without "-v2"
# were run before it and stay as measured). They were run from a checkout at
# 7cc7751: 6b09992 then changed the bf16 round-off (the attention projections
# as one MatMul each), so a "-v2" row reproduces bit for bit only from a
# checkout before 6b09992.
# The English stage with one of the two fast settings each (issue 23): on the
# fast settings it lost 1.39 points on three seeds; bf16 alone lost 1.24 and
# float32 with grouping 0.69, each on three (BENCHMARKS.md, parity). They
# start no other row (`--only` runs them).
ENGLISH = {
    "english-only": {},
    "english-only-fast": FAST,
    "english-only-fast-v2": FAST,
    "english-only-bf16": {"--precision": "mixed_bfloat16"},
    "english-only-grouped": {"--group-by-length": True},
}

METHODS = {  # row name: (trainer, its flags, seeds)
    "finetune": ("finetune", {}, 3),
    "meta": ("meta", {}, 3),
    "freeze-bottom-3": ("finetune", {"--freeze-bottom": 3}, 2),
    "freeze-bottom-6": ("finetune", {"--freeze-bottom": 6}, 2),
    "layer-decay-0.9": ("finetune", {"--layer-decay": 0.9}, 2),
    "meta-shared": ("meta", {"--rates": "shared"}, 2),
    "meta-joint": ("meta", {"--meta": "joint"}, 2),
    # The strongest baseline: plain fine-tuning with its learning rate tuned on
    # the same evaluation rows as every other method (issue 11). 1e-5 and
    # 1.5e-5 (issue 24): meta-paper-100's rates average λ ≈ 0.75-0.8, about a
    # common lr of 1.5e-5, so these tell a step-size effect from layer selection.
    "finetune-lr1e-05": ("finetune", {"--learning-rate": "1e-5"}, 3),
    "finetune-lr1.5e-05": ("finetune", {"--learning-rate": "1.5e-5"}, 3),
    "finetune-lr3e-05": ("finetune", {"--learning-rate": "3e-5"}, 3),
    "finetune-lr5e-05": ("finetune", {"--learning-rate": "5e-5"}, 3),
    # The paper's literal Algorithm 1 (rounds from the pretrained encoder with
    # a fresh head), first-order, with φ updates enough to move.
    "meta-paper-100": ("meta", {"--meta-init": "pretrained", **LONG_META}, 3),
    # The paper's Table 2 under its own protocol (issue 24): no layer-wise
    # update (one rate for all layers), and no cross-lingual meta-training (φ
    # from the training loss, no held-out language).
    "meta-paper-100-shared": (
        "meta",
        {"--meta-init": "pretrained", "--rates": "shared", **LONG_META},
        3,
    ),
    "meta-paper-100-joint": (
        "meta",
        {"--meta-init": "pretrained", "--meta": "joint", **LONG_META},
        3,
    ),
    # Beyond the paper (issue 24): rates that start at λ = 1 (plain
    # fine-tuning) and may rise to 2, so that meta-training can also speed a
    # layer up; σ(φ) can only slow one down.
    "meta-paper-100-scaled": (
        "meta",
        {"--meta-init": "pretrained", "--rates-param": "scaled-sigmoid"}
        | {"--initial-phi": 0, **LONG_META},
        3,
    ),
    # Beyond the paper (issue 24): the paper-literal row at the base learning
    # rate that is best for plain fine-tuning (finetune-lr3e-05, the strongest
    # baseline over 3 seeds): does meta-training add anything on top of it?
    "meta-paper-100-lr3e-05": (
        "meta",
        {"--meta-init": "pretrained", "--learning-rate": "3e-5", **LONG_META},
        3,
    ),
    # Is it the learning of φ (issue 24)? Stage 3 with the same seed's initial
    # rates λ(φ0), fixed: the same φ0 and the same stage 3 as meta-paper-100
    # (-lr3e-05) of that seed, without meta-training (`--rounds 0`). The
    # learned rates stay close to φ0 (start-end correlation 0.93 on seed 2).
    "meta-paper-0": ("meta", {"--meta-init": "pretrained", "--rounds": 0}, 3),
    "meta-paper-0-lr3e-05": (
        "meta",
        {"--meta-init": "pretrained", "--learning-rate": "3e-5", "--rounds": 0},
        3,
    ),
    # The learned rates again in plain fine-tuning (`trainers.finetune
    # --rates-from`): the meta row's stage 3 with finetune's batches and
    # dropout masks of the seed. Meta rows run before 798b5fd drew other masks
    # in stage 3; this row and the finetune row at the same learning rate now
    # differ by the rates alone, and this row and the meta row by the masks.
    "replay-meta-paper-100": (
        "finetune",
        {"--rates-from": RatesOf("meta-paper-100")},
        3,
    ),
    "replay-meta-paper-100-lr3e-05": (
        "finetune",
        {"--learning-rate": "3e-5", "--rates-from": RatesOf("meta-paper-100-lr3e-05")},
        3,
    ),
    # The paper's Table 2 on common draws: the rates its two ablations learned
    # (one shared rate; φ from the training loss), replayed like the rates of
    # meta-paper-100, so that the three differ by their rates alone.
    "replay-meta-paper-100-shared": (
        "finetune",
        {"--rates-from": RatesOf("meta-paper-100-shared")},
        3,
    ),
    "replay-meta-paper-100-joint": (
        "finetune",
        {"--rates-from": RatesOf("meta-paper-100-joint")},
        3,
    ),
    # The noise of the auxiliary stage alone: finetune-lr3e-05 again, its
    # batches and dropout masks drawn from another seed (`--aux-seed`), the
    # English model and the pairing seed kept. Two runs of one method differ
    # by this much (issue 24: the masks alone moved one meta run 1.26 points).
    "redraw-finetune-lr3e-05": (
        "finetune",
        {"--learning-rate": "3e-5", "--aux-seed": SeedPlus(1000)},
        3,
    ),
    # "Layer selection or step size" on a second draw per seed: the replay of
    # meta-paper-100's rates, plain fine-tuning at 2e-5 and at 1.5e-5 (about
    # the common step those rates amount to), all three on the auxiliary
    # stage's batches and masks of --aux-seed seed + 1000, so that each seed
    # gives two paired comparisons instead of one.
    "redraw-finetune": ("finetune", {"--aux-seed": SeedPlus(1000)}, 3),
    "redraw-finetune-lr1.5e-05": (
        "finetune",
        {"--learning-rate": "1.5e-5", "--aux-seed": SeedPlus(1000)},
        3,
    ),
    "redraw-replay-meta-paper-100": (
        "finetune",
        {"--rates-from": RatesOf("meta-paper-100"), "--aux-seed": SeedPlus(1000)},
        3,
    ),
    # λ = exp(φ) from φ = 0 (plain fine-tuning), the exact meta-gradient.
    "meta-exp-exact-100": (
        "meta",
        {"--rates-param": "exp", "--initial-phi": 0, "--meta-gradient": "exact"}
        # 1.39x plain fine-tuning's peak memory on e5-small (BENCHMARKS.md).
        | {"--state-every": 1, "--offload-states": True, "--hvp-micro-batches": 4}
        | LONG_META,
        3,
    ),
    "finetune-fast": ("finetune", FAST, 3),
    # The fast settings after a float32 English stage: bf16 cost the short
    # English stage 1.76 points (english-only-fast), while the auxiliary stage
    # reached parity even from that worse start (finetune-fast). The English
    # model is trained once per seed and shared, so this is where the time is.
    "finetune-fast-en32": ("finetune", FAST, 3),
    # The fast settings with bf16 computing as torch.autocast does (17a5b08):
    # parity with float32 to measure again, and the paper-literal row on them
    # (issue 23's wall-time target), compared with the fast rows only.
    "finetune-fast-v2": ("finetune", FAST, 3),
    "meta-paper-100-fast-v2": (
        "meta",
        {"--meta-init": "pretrained", **LONG_META, **FAST},
        3,
    ),
}
# The English model each row starts from: "english-only" unless named here.
STAGE1 = {
    "finetune-fast": "english-only-fast",
    "finetune-fast-v2": "english-only-fast-v2",
    "meta-paper-100-fast-v2": "english-only-fast-v2",
}
# Sized so that one method x one seed takes about 20 minutes on a 2-core CPU.
BUDGET = {
    "common": {"--sequence-length": 64, "--batch-size": 32, "--checkpoint-every": 60},
    "en": {"--en-steps": 300},
    "aux": {"--aux-epochs": 2},
    "meta": {"--rounds": 4, "--meta-updates-per-round": 3, "--meta-interval": 15}
    # Rounds from the English model: the reading every meta row was measured
    # with before `--meta-init pretrained` became the default; a row's own
    # "--meta-init" replaces it.
    | {"--meta-init": "english"},
}


def stage1_of(method):
    """The English row whose model `method` starts from."""
    return STAGE1.get(method, "english-only")


def plan(seeds_main, seeds_rest, only, seeds=None):
    """(method, seed) pairs, seed-major so that a seed's comparison completes
    first; each seed's English models first ("english-only" always, the others
    when a planned row starts from them). `seeds`, if given, keeps only those
    seeds (each row still has its own number of seeds)."""
    runs = []
    for seed in range(max(seeds_main, seeds_rest)):
        if seeds is not None and seed not in seeds:
            continue
        rows = [
            method
            for method, (_, _, n) in METHODS.items()
            if seed < (seeds_main if n == 3 else seeds_rest)
            and (not only or method in only)
        ]
        needed = {stage1_of(m) for m in rows} | {"english-only"} | set(only or ())
        runs += [(english, seed) for english in ENGLISH if english in needed]
        runs += [(method, seed) for method in rows]
    return runs


def command(method, seed, args, budget):
    """The command line of row `method`, seed `seed`, and its run directory.

    Its flags are one dict: the shared ones, then the budget, then the row's
    own, a later part replacing an earlier value (the English rows' `--aux ""`,
    the long meta budget's `--rounds`); `--method-name` names the run as the
    row, so results.json needs no renaming.
    """
    out = pathlib.Path(args.work_dir) / f"{method}-seed{seed}"
    flags = {
        "--preset": args.preset,
        "--data-dir": args.data_dir,
        "--aux": "el,ur",
        "--seed": seed,
        "--output-dir": str(out),
        **budget["common"],
        **budget["en"],
    }
    if method in ENGLISH:
        trainer = "finetune"
        flags |= {"--aux": "", **ENGLISH[method]}
    else:
        trainer, extra, _ = METHODS[method]
        stage1 = pathlib.Path(args.work_dir) / f"{stage1_of(method)}-seed{seed}"
        flags |= {"--init-from": str(stage1), **budget["aux"]}
        flags |= {**(budget["meta"] if trainer == "meta" else {}), **extra}
    for flag, value in flags.items():
        if isinstance(value, PerSeed):
            flags[flag] = value.value(args, seed)
    flags["--method-name"] = method
    return [sys.executable, "-m", f"trainers.{trainer}", *argv_of(flags)], out


def has_meta_steps(run_dir):
    """Whether the run learned its rates in meta steps (a heat map to draw):
    not a baseline, nor `trainers.meta --rounds 0`."""
    stats = pathlib.Path(run_dir) / META_STATS_JSON
    return stats.is_file() and json.loads(stats.read_text())["phi_updates"] > 0


def missing_rates(method, seed, results_dir):
    """The row whose rates `method` reuses (`RatesOf`) when their file for
    `seed` is not in `results_dir` yet; else None."""
    if method in ENGLISH:
        return None
    for value in METHODS[method][1].values():
        if isinstance(value, RatesOf) and not value.path(results_dir, seed).is_file():
            return value.row
    return None


def argv_of(flags):
    """`{"--seed": 1, "--group-by-length": True}` -> `["--seed", "1",
    "--group-by-length"]` (True: a switch)."""
    argv = []
    for flag, value in flags.items():
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _needs_stage1(seed, runs, args, english="english-only"):
    """Whether a run of `seed` still to do starts from the missing English
    model of row `english`."""
    run_dir = pathlib.Path(args.work_dir) / f"{english}-seed{seed}"
    if holds_classifier(stage1_preset(run_dir)):
        return False
    return any(
        s == seed
        and m not in ENGLISH
        and stage1_of(m) == english
        and not (
            pathlib.Path(args.results_dir) / f"{m}-seed{s}" / RESULTS_JSON
        ).is_file()
        for m, s in runs
    )


def _check_reproduced(new_dir, committed_dir):
    """Logs whether a re-trained run's per-example results equal the committed ones."""
    new = json.loads((new_dir / RESULTS_JSON).read_text())
    old = json.loads((committed_dir / RESULTS_JSON).read_text())
    if new["correct"] == old["correct"]:
        logging.info("%s: reproduced the committed results bit for bit", new_dir.name)
        return True
    differ = [x for x in old["correct"] if new["correct"].get(x) != old["correct"][x]]
    logging.warning(
        "%s: NOT reproduced: per-example results differ in %s", new_dir.name, differ
    )
    return False


def is_tuned_finetune(method):
    """Plain fine-tuning in float32 at some learning rate: `finetune` or
    `finetune-lr…`."""
    return method == "finetune" or method.startswith("finetune-lr")


def finished_runs(results_dir):
    """The results.json of every finished run in `results_dir`, in the
    order of the plan's rows, then by seed."""
    runs = [
        json.loads(p.read_text())
        for p in sorted(pathlib.Path(results_dir).glob("*/results.json"))
    ]
    order = [*ENGLISH, *METHODS]
    runs.sort(
        key=lambda r: (
            order.index(r["method"]) if r["method"] in order else 99,
            r["seed"],
        )
    )
    return runs


def per_seed(results_dir, baseline="finetune", runs=None):
    """`--per-seed`: every row's target average per seed, and its difference
    to `baseline` on the same seed (`runs`: `finished_runs(results_dir)`,
    when the caller has read them)."""
    from trainers.reporting import per_seed_table

    runs = finished_runs(results_dir) if runs is None else runs
    if not runs:
        return "(no finished runs yet)\n"
    return per_seed_table(runs, baseline)


def table(results_dir, baseline="finetune", runs=None):
    from trainers.reporting import compare, results_table, strongest_baseline

    runs = finished_runs(results_dir) if runs is None else runs
    if not runs:
        return "(no finished runs yet)\n"
    p_values, more = None, []
    if any(r["method"] == baseline for r in runs):
        p_values = {m: p for m, (_, p) in compare(runs, baseline).items()}
    # The strongest baseline: plain fine-tuning at its best learning rate (in
    # float32, over as many seeds as the best-covered rate has).
    best = strongest_baseline(runs, is_tuned_finetune)
    if best is not None and best != baseline:
        more = [(best, {m: p for m, (_, p) in compare(runs, best).items()})]
    text = results_table(runs, baseline, p_values, more)
    if best is not None:
        text += f"\nstrongest learning-rate-tuned baseline: {best}\n"
    times = {}
    for r in runs:  # a resumed run's wall time covers only its last process
        times.setdefault(r["method"], [])
        if not r.get("resumed"):
            times[r["method"]].append(r["wall_time_s"])
    text += (
        "\nwall time per run (min, mean over the runs not resumed after an "
        "interruption): "
        + ", ".join(
            f"{m} {sum(t) / len(t) / 60:.1f} ({len(t)})" if t else f"{m} n/a"
            for m, t in times.items()
        )
        + "\n"
    )
    return text


def seed_list(text):
    """`"1,2"` -> `{1, 2}`; None if `text` is not seeds separated by commas."""
    parts = text.split(",")
    if not all(part.strip().isdigit() for part in parts):
        return None
    return {int(part) for part in parts}


def check_args(args):
    """Problems with a benchmark command line, one line each (before any run)."""
    problems = []
    for flag, value in (
        ("--seeds-main", args.seeds_main),
        ("--seeds-rest", args.seeds_rest),
    ):
        if value < 0:
            problems.append(f"{flag} {value}: must be >= 0")
    unknown = sorted(
        set((args.only or "").split(",")) - set(METHODS) - set(ENGLISH) - {""}
    )
    if unknown:
        problems.append(
            f"--only {args.only}: unknown method(s) {', '.join(unknown)}; "
            f"methods: {', '.join(METHODS)}"
        )
    if args.seeds is not None:
        seeds, last = seed_list(args.seeds), max(args.seeds_main, args.seeds_rest)
        if seeds is None:
            problems.append(
                f"--seeds {args.seeds}: must be seeds separated by commas, e.g. 1,2"
            )
        elif max(seeds) >= last:
            problems.append(
                f"--seeds {args.seeds}: beyond the planned seeds 0..{last - 1} "
                f"(raise --seeds-main or --seeds-rest)"
            )
    if args.dry_run:  # only prints the commands: the inputs need not exist yet
        return problems
    from trainers.data_checks import check_data_dir
    from trainers.output_checks import check_output_dir
    from trainers.preset_checks import check_preset

    problem, _ = check_preset("--preset", args.preset)
    problems += [problem] if problem else []
    problems += check_data_dir(args.data_dir)
    for flag, path in (
        ("--work-dir", args.work_dir),
        ("--results-dir", args.results_dir),
    ):
        problems += [
            p.replace("--output-dir", flag)
            for p in check_output_dir(pathlib.Path(path))
        ]
    return problems


def main(argv=None):
    parser = cli.parser("python -m benchmarks.xnli_proxy", __doc__)
    parser.add_argument(
        "--preset",
        default="presets/multilingual_e5_small",
        help="Encoder preset (tools.import_e5_small makes this one).",
    )
    parser.add_argument(
        "--data-dir", default="../shared/data/xnli", help="XNLI TSV directory."
    )
    parser.add_argument(
        "--work-dir", default="runs/xnli-proxy", help="Checkpoints and models."
    )
    parser.add_argument(
        "--results-dir", default="benchmarks/xnli-proxy", help="Results (committed)."
    )
    parser.add_argument(
        "--seeds-main", type=int, default=3, help="Seeds of finetune and meta."
    )
    parser.add_argument(
        "--seeds-rest", type=int, default=2, help="Seeds of the other methods."
    )
    parser.add_argument(
        "--only",
        help="Comma-separated methods to run (english-only always runs, and "
        "the English model a fast row starts from).",
    )
    parser.add_argument(
        "--seeds",
        help="Comma-separated seeds: run only these of the planned runs (e.g. "
        "seed 1 of a row whose seed 0 needs an English model that is not in "
        "--work-dir).",
    )
    report = parser.add_mutually_exclusive_group()
    report.add_argument(
        "--table", action="store_true", help="Print the summary table and exit."
    )
    report.add_argument(
        "--per-seed",
        action="store_true",
        help="Print every row's target average per seed, and its difference "
        "to --baseline on the same seed, and exit.",
    )
    parser.add_argument(
        "--baseline",
        default="finetune",
        help="The row the table's p-values (and --per-seed's differences) pair "
        "every other row with.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print the commands only (the preset and data are not checked).",
    )
    cli.add_log_level_flag(parser)
    args = parser.parse_args(argv)
    cli.configure_logging(args.log_level)
    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
    cli.import_tensorflow()
    if args.table or args.per_seed:
        runs = finished_runs(args.results_dir)
        rows = {r["method"] for r in runs}
        if rows and args.baseline not in rows:
            cli.fail(
                parser.prog,
                [
                    f"--baseline {args.baseline}: no finished run of that row in "
                    f"{args.results_dir}; rows: {', '.join(sorted(rows))}"
                ],
            )
    if args.table:
        print(table(args.results_dir, args.baseline, runs))
        return 0
    if args.per_seed:
        print(per_seed(args.results_dir, args.baseline, runs), end="")
        return 0
    problems = check_args(args)
    if problems:
        cli.fail(parser.prog, problems)
    only = set(args.only.split(",")) if args.only else None
    seeds = seed_list(args.seeds) if args.seeds is not None else None
    runs = plan(args.seeds_main, args.seeds_rest, only, seeds)
    for method, seed in runs:
        done = pathlib.Path(args.results_dir) / f"{method}-seed{seed}"
        if (done / RESULTS_JSON).is_file():
            if method not in ENGLISH or not _needs_stage1(seed, runs, args, method):
                continue
            # Finished before, but its English model (not committed) is gone
            # and other runs of this seed start from it: train it again, and
            # check that it reproduces the committed results.
            done = pathlib.Path(args.work_dir) / "reproduced" / f"{method}-seed{seed}"
        missing = missing_rates(method, seed, args.results_dir)
        if missing:
            logging.warning(
                "%s seed %d: skipped, it needs %s seed %d first",
                method,
                seed,
                missing,
                seed,
            )
            continue
        cmd, out = command(method, seed, args, BUDGET)
        logging.info("%s seed %d: %s", method, seed, shlex.join(cmd))
        if args.dry_run:
            continue
        start = time.time()
        log = pathlib.Path(args.work_dir) / f"{method}-seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        if code != 0:
            logging.error(
                "%s seed %d failed (exit %d); see %s", method, seed, code, log
            )
            return code
        done.mkdir(parents=True, exist_ok=True)
        if has_meta_steps(out):
            from tools.plot_rates import plot_rates

            plot_rates(out)
        for name in (RESULTS_JSON, RATES_JSON, RATES_PNG, META_STATS_JSON):
            if (out / name).is_file():
                shutil.copy(out / name, done / name)
        # Checkpoints take ~1 GB a run; the models stay.
        shutil.rmtree(out / CHECKPOINTS_DIR, ignore_errors=True)
        logging.info(
            "%s seed %d done in %.1f min", method, seed, (time.time() - start) / 60
        )
        if done.parent.name == "reproduced":
            _check_reproduced(done, pathlib.Path(args.results_dir) / done.name)
    print(table(args.results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
