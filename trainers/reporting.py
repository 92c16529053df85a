"""What a finished run reports: Table-1-style tables, paired bootstrap tests
of one method against another, and a meta run's φ statistics.

`trainers.evaluate` (the command) and `benchmarks.xnli_proxy` read results through
here; `trainers.run.Run.evaluate` writes them.
"""

import json
import math
import pathlib

import numpy as np

from keras_metaopt.formats import RESULTS_JSON
from keras_metaopt.run_record import recorded_args
from trainers.output_checks import PATH_FLAGS, RESUME_SAFE, overridden

# What a trainer's results.json must hold to be compared.
RESULT_KEYS = (
    "method",
    "seed",
    "accuracy",
    "correct",
    "targets",
    "avg_target",
    "avg_all",
)


# Flags that differ between the seeds of one method (each seed may start from
# its own English model, reuse the rates its seed's meta run learned, and draw
# its own auxiliary stage); with RESUME_SAFE, what pooling seeds may ignore.
SEED_FLAGS = frozenset({"seed", "init_from", "rates_from", "aux_seed"})


def run_settings(args):
    """The result-changing flags of a run, from its flags (`vars(args)` or
    run.json's `args`): everything but RESUME_SAFE, SEED_FLAGS and the flags
    another one overrides there (`--en-epochs` under `--en-steps`)."""
    ignored = RESUME_SAFE | SEED_FLAGS | overridden(args)
    return {k: v for k, v in args.items() if k not in ignored}


def settings_of(run, run_dir):
    """A finished run's result-changing settings: results.json's `settings`;
    for results written before it had them, run.json's flags beside it; else
    the settings results.json names (preset, aux, eval_split)."""
    if "settings" in run:
        return run_settings(run["settings"])
    args = recorded_args(run_dir)
    if args is not None:
        return run_settings(args)
    named = {k: run[k] for k in ("preset", "aux", "eval_split") if k in run}
    if isinstance(named.get("aux"), list):  # results.json's list, the flag's a,b
        named["aux"] = ",".join(named["aux"])
    return named


def pooling_problems(runs, run_dirs):
    """Why the runs of a method should not be averaged as its seeds, one line
    each: two runs of one seed, or flags that differ (paths by their last
    component). `runs[i]` is the results.json of `run_dirs[i]`."""
    problems = []
    by_method = {}
    for run, run_dir in zip(runs, run_dirs, strict=True):
        by_method.setdefault(run["method"], []).append((run, run_dir))
    for method, group in by_method.items():
        seeds = {}
        for run, run_dir in group:
            seeds.setdefault(run["seed"], []).append(str(run_dir))
        for seed, dirs in seeds.items():
            if len(dirs) > 1:
                problems.append(
                    f"{' and '.join(dirs)} are both {method} seed {seed}: one "
                    "would count twice"
                )
        settings = [(settings_of(run, d), str(d)) for run, d in group]
        differing = []
        for key in sorted({k for s, _ in settings for k in s}):
            values = {}
            for s, d in settings:
                if key in s:
                    value = s[key]
                    if key in PATH_FLAGS and isinstance(value, str):
                        value = pathlib.PurePath(value).name
                    values.setdefault(json.dumps(value, sort_keys=True), []).append(d)
            if len(values) > 1:
                flag = "--" + key.replace("_", "-")
                shown = "; ".join(
                    f"{_shown(v)} in {', '.join(ds)}" for v, ds in values.items()
                )
                differing.append(f"{flag} ({shown})")
        if differing:
            problems.append(f"the runs of {method} differ in {', '.join(differing)}")
    return problems


def _shown(encoded):
    """A flag's value as the user would type it (`float32`, not `"float32"`)."""
    value = json.loads(encoded)
    return value if isinstance(value, str) else encoded


_BOOTSTRAP_CHUNK = 1 << 21  # resample indices drawn at once


def paired_bootstrap(correct_a, correct_b, samples=10_000, seed=0):
    """Two-sided p-value that methods a and b differ in mean accuracy.

    `correct_a`, `correct_b`: per-example scores (0/1 or seed means) on the
    same examples. Returns `(delta, p)` with delta = mean(a) - mean(b).
    """
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(
            f"paired bootstrap needs two equal-length vectors; got {a.shape}, {b.shape}"
        )
    diff = a - b
    delta = float(diff.mean())
    rng = np.random.default_rng(seed)
    # The resamples a few rows at a time: the same draws as one
    # (samples, len(diff)) array, without its memory (1.4 GB for xnli-proxy's
    # 17,430 target pairs).
    rows = max(1, _BOOTSTRAP_CHUNK // len(diff))
    resampled = np.concatenate(
        [
            diff[
                rng.integers(0, len(diff), size=(min(rows, samples - i), len(diff)))
            ].mean(axis=1)
            for i in range(0, samples, rows)
        ]
    )
    p = float(np.mean(np.abs(resampled - delta) >= abs(delta))) if delta else 1.0
    return delta, p


def load_results(run_dirs):
    runs = []
    for run_dir in run_dirs:
        run_dir = pathlib.Path(run_dir)
        path = run_dir / RESULTS_JSON
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run directory")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results (is the run finished?)")
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"{path}: does not parse: {err}") from None
        missing = [k for k in RESULT_KEYS if k not in run]
        if missing:
            raise ValueError(f"{path}: not a trainer's results (no {missing[0]!r})")
        runs.append(run)
    return runs


def compare(runs, baseline, samples=10_000, seed=0):
    """`{method: (delta, p)}` of each method against `baseline` on target languages.

    Seeds are paired: a method is compared with the baseline's runs of the
    seeds it has (same English model), or with all of them if none match.
    Per-example correctness is averaged over those seeds before resampling.
    """
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    if baseline not in by_method:
        raise ValueError(
            f"no run of the baseline '{baseline}'; methods: {sorted(by_method)}"
        )
    targets = by_method[baseline][0]["targets"]

    def scores(group):
        return np.mean(
            [np.concatenate([r["correct"][x] for x in targets]) for r in group], axis=0
        )

    def base(group):
        seeds = {r["seed"] for r in group}
        paired = [r for r in by_method[baseline] if r["seed"] in seeds]
        return scores(paired or by_method[baseline])

    return {
        method: paired_bootstrap(scores(group), base(group), samples, seed)
        for method, group in by_method.items()
        if method != baseline
    }


def results_table(runs, baseline=None, p_values=None, more_p_values=()):
    """A Table-1-style markdown table: one row per method, mean ± std over seeds.

    `p_values` (`{method: p}` against `baseline`) and each `(name, {method:
    p})` of `more_p_values` add a column "p vs NAME".
    """
    languages = list(runs[0]["accuracy"])
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    columns = [(baseline, p_values)] if p_values else []
    columns += list(more_p_values)
    header = "| method | seeds | " + " | ".join(languages) + " | avg target | avg all |"
    header += "".join(f" p vs {name} |" for name, _ in columns)
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for method, group in by_method.items():
        cells = [method, str(len(group))]
        for lang in languages:
            cells.append(_fmt([r["accuracy"][lang] for r in group]))
        cells.append(_fmt([r["avg_target"] for r in group]))
        cells.append(_fmt([r["avg_all"] for r in group]))
        for _, values in columns:
            p = values.get(method)
            cells.append("" if p is None else f"{p:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_seed_table(runs, baseline):
    """A markdown table of the target average per seed, one row per method
    (in the order of `runs`): its value on each seed, its difference to
    `baseline` on the same seed (· : that seed not run), the mean of those
    differences ± their standard deviation with their number, and the paired
    t-test's p over those seeds (`paired_t_p`). Unlike the paired bootstrap of
    `compare`, the spread over seeds includes each run's training noise."""
    seeds = sorted({r["seed"] for r in runs})
    value = {(r["method"], r["seed"]): 100 * r["avg_target"] for r in runs}
    base = {s: value.get((baseline, s)) for s in seeds}
    slash = " / ".join(str(s) for s in seeds)
    lines = [
        "| row | "
        + " | ".join(f"seed {s}" for s in seeds)
        + f" | − {baseline}, seed {slash} | mean ± std of the differences (seeds)"
        + " | p, paired t over seeds |",
        "|" + "---|" * (len(seeds) + 4),
    ]
    for method in dict.fromkeys(r["method"] for r in runs):
        cells = [_signed(value.get((method, s)), sign=False) for s in seeds]
        diffs = [
            value[method, s] - base[s]
            if (method, s) in value and base[s] is not None
            else None
            for s in seeds
        ]
        shown = [_signed(d, missing="·") for d in diffs]
        while shown and shown[-1] == "·":
            shown.pop()
        paired = [d for d in diffs if d is not None]
        mean, p = "", ""
        if len(paired) > 1:
            spread = np.std(paired, ddof=1)
            mean = f"{_signed(np.mean(paired))} ± {spread:.2f} ({len(paired)})"
            p = f"{paired_t_p(paired):.3f}"
        elif paired:
            mean = f"{_signed(paired[0])} (1)"
        if method == baseline:
            shown, mean, p = [], "", ""
        lines.append(
            f"| {method} | {' | '.join(cells)} | {' / '.join(shown)} | {mean} | {p} |"
        )
    return "\n".join(lines) + "\n"


def paired_t_p(differences):
    """Two-sided p-value of a paired t-test that the mean of `differences`
    (one per seed) is 0; NaN for fewer than two, 1.0 (0.0) when they are all
    0 (all the same, not 0). With a few seeds it has little power, but unlike
    the paired bootstrap it includes each run's training noise."""
    d = np.asarray(differences, float)
    if len(d) < 2:
        return float("nan")
    spread = d.std(ddof=1)
    if spread == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (spread / np.sqrt(len(d)))
    df = len(d) - 1
    return _incomplete_beta(df / (df + t * t), df / 2, 0.5)


def _incomplete_beta(x, a, b):
    """The regularized incomplete beta function I_x(a, b), by its continued
    fraction (Lentz's method; Numerical Recipes, betai and betacf)."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side
        return 1.0 - _incomplete_beta(1.0 - x, b, a)
    front = math.exp(
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + a * math.log(x)
        + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return front * h / a


def _signed(value, sign=True, missing=""):
    """`1.234` -> `+1.23`, `-0.5` -> `−0.50` (a minus sign), `0` -> `0.00`;
    `missing` for None."""
    if value is None:
        return missing
    text = f"{value:+.2f}" if sign else f"{value:.2f}"
    if text in ("+0.00", "-0.00"):
        return "0.00"
    return text.replace("-", "−")


def strongest_baseline(runs, is_baseline):
    """The method, among those `is_baseline(method)` accepts, with the highest
    mean target average over the most seeds any of them has (a row with fewer
    seeds does not count yet); None if there is none."""
    by_method = {}
    for run in runs:
        if is_baseline(run["method"]):
            by_method.setdefault(run["method"], []).append(run["avg_target"])
    if not by_method:
        return None
    most = max(len(v) for v in by_method.values())
    complete = {m: np.mean(v) for m, v in by_method.items() if len(v) == most}
    return max(complete, key=complete.get)


def _fmt(values):
    values = 100 * np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def mean_accuracy(accuracy, languages):
    """The mean accuracy over `languages` (NaN for none)."""
    return (
        float(np.mean([accuracy[x] for x in languages])) if languages else float("nan")
    )


def phi_statistics(optimizer, phi_start, steps_down):
    """How far φ moved from its start, and how often it went down.

    Written to `meta_stats.json`: with too few or mis-signed φ updates the
    learned rates are only the initialisation (BENCHMARKS.md, xnli-proxy).
    """
    phi = optimizer.phi.numpy().astype(np.float64)
    start = np.asarray(phi_start, np.float64)
    names = optimizer.group_names if optimizer.mode != "shared" else ["shared"]
    updates = int(optimizer.phi_optimizer.iterations.numpy())
    moved = np.abs(phi - start)
    stats = {
        "phi_updates": updates,
        "phi_start": dict(zip(names, start.tolist())),
        "phi_end": dict(zip(names, phi.tolist())),
        "displacement_max": float(moved.max()),
        "displacement_mean": float(moved.mean()),
        "share_steps_down": float(np.asarray(steps_down.numpy()).sum())
        / max(1, updates * len(names)),
        "mean_rate": float(np.mean(list(optimizer.rates().values()))),
    }
    if len(names) > 1 and start.std() > 0 and phi.std() > 0:
        stats["corr_start_end"] = float(np.corrcoef(start, phi)[0, 1])
    return stats
