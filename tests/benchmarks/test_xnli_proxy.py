"""The xnli-proxy driver: its plan, its skipping of finished runs, its table."""

import json

import numpy as np
import pytest

from benchmarks import xnli_proxy
from trainers.reporting import compare


def test_plan_is_seed_major_with_the_english_model_first():
    runs = xnli_proxy.plan(3, 2, None)
    assert runs[0] == ("english-only", 0)
    assert runs[3:34] == [
        (m, 0)
        for m in (
            "finetune",
            "meta",
            "freeze-bottom-3",
            "freeze-bottom-6",
            "layer-decay-0.9",
            "meta-shared",
            "meta-joint",
            "finetune-lr1e-05",
            "finetune-lr1.5e-05",
            "finetune-lr3e-05",
            "finetune-lr5e-05",
            "meta-paper-100",
            "meta-paper-100-shared",
            "meta-paper-100-joint",
            "meta-paper-100-scaled",
            "meta-paper-100-lr3e-05",
            "meta-paper-0",
            "meta-paper-0-lr3e-05",
            "replay-meta-paper-100",
            "replay-meta-paper-100-lr3e-05",
            "replay-meta-paper-100-shared",
            "replay-meta-paper-100-joint",
            "redraw-finetune-lr3e-05",
            "redraw-finetune",
            "redraw-finetune-lr1.5e-05",
            "redraw-replay-meta-paper-100",
            "meta-exp-exact-100",
            "finetune-fast",
            "finetune-fast-en32",
            "finetune-fast-v2",
            "meta-paper-100-fast-v2",
        )
    ]
    assert runs[1:3] == [("english-only-fast", 0), ("english-only-fast-v2", 0)]
    assert runs[68:] == [
        ("english-only", 2),
        ("english-only-fast", 2),
        ("english-only-fast-v2", 2),
        ("finetune", 2),
        ("meta", 2),
        ("finetune-lr1e-05", 2),
        ("finetune-lr1.5e-05", 2),
        ("finetune-lr3e-05", 2),
        ("finetune-lr5e-05", 2),
        ("meta-paper-100", 2),
        ("meta-paper-100-shared", 2),
        ("meta-paper-100-joint", 2),
        ("meta-paper-100-scaled", 2),
        ("meta-paper-100-lr3e-05", 2),
        ("meta-paper-0", 2),
        ("meta-paper-0-lr3e-05", 2),
        ("replay-meta-paper-100", 2),
        ("replay-meta-paper-100-lr3e-05", 2),
        ("replay-meta-paper-100-shared", 2),
        ("replay-meta-paper-100-joint", 2),
        ("redraw-finetune-lr3e-05", 2),
        ("redraw-finetune", 2),
        ("redraw-finetune-lr1.5e-05", 2),
        ("redraw-replay-meta-paper-100", 2),
        ("meta-exp-exact-100", 2),
        ("finetune-fast", 2),
        ("finetune-fast-en32", 2),
        ("finetune-fast-v2", 2),
        ("meta-paper-100-fast-v2", 2),
    ]
    assert len(runs) == 3 * 3 + 26 * 3 + 5 * 2
    # The English rows with one fast setting each start no row: only --only
    # runs them, after the float32 English model of their seed.
    assert xnli_proxy.plan(3, 2, {"english-only-bf16"}) == [
        (m, s) for s in range(3) for m in ("english-only", "english-only-bf16")
    ]
    assert xnli_proxy.plan(3, 2, {"meta-joint"}) == [
        ("english-only", 0),
        ("meta-joint", 0),
        ("english-only", 1),
        ("meta-joint", 1),
        ("english-only", 2),
    ]
    # A fast row starts from the fast English model, which runs only for it.
    assert xnli_proxy.plan(3, 2, {"finetune-fast"})[:3] == [
        ("english-only", 0),
        ("english-only-fast", 0),
        ("finetune-fast", 0),
    ]
    assert xnli_proxy.plan(1, 0, {"english-only-fast"}) == [
        ("english-only", 0),
        ("english-only-fast", 0),
    ]


def _flags(cmd):
    """A command's flags as a dict, checking that none is given twice."""
    flags, i = {}, 3
    while i < len(cmd):
        value = True
        if i + 1 < len(cmd) and not cmd[i + 1].startswith("--"):
            value = cmd[i + 1]
        assert cmd[i] not in flags, f"{cmd[i]} twice in {cmd}"
        flags[cmd[i]] = value
        i += 1 if value is True else 2
    return flags


def _args(tmp_path):
    return type(
        "Args",
        (),
        {
            "work_dir": str(tmp_path),
            "results_dir": str(tmp_path / "results"),
            "preset": "P",
            "data_dir": "D",
        },
    )


def test_a_replay_row_reuses_the_rates_its_meta_row_learned_with_its_seed(
    tmp_path, caplog
):
    args = _args(tmp_path)
    flags = _flags(
        xnli_proxy.command("replay-meta-paper-100-lr3e-05", 2, args, xnli_proxy.BUDGET)[
            0
        ]
    )
    rates = tmp_path / "results" / "meta-paper-100-lr3e-05-seed2" / "rates.json"
    assert flags["--rates-from"] == str(rates)
    assert flags["--learning-rate"] == "3e-5"
    assert flags["--init-from"] == str(tmp_path / "english-only-seed2")
    # Without that file the driver skips the row and says what it waits for.
    caplog.set_level("INFO")
    argv = ["--results-dir", args.results_dir, "--work-dir", args.work_dir]
    argv += ["--dry-run", "--only", "replay-meta-paper-100-lr3e-05", "--seeds", "2"]
    argv += ["--seeds-main", "3"]
    assert xnli_proxy.main(argv) == 0
    said = [r.getMessage() for r in caplog.records]
    assert said[-1] == (
        "replay-meta-paper-100-lr3e-05 seed 2: skipped, it needs "
        "meta-paper-100-lr3e-05 seed 2 first"
    )
    rates.parent.mkdir(parents=True)
    rates.write_text("{}")
    caplog.clear()
    assert xnli_proxy.main(argv) == 0
    said = [r.getMessage().split(": ")[0] for r in caplog.records]
    assert said == ["english-only seed 2", "replay-meta-paper-100-lr3e-05 seed 2"]


def test_a_redraw_row_keeps_the_english_model_and_seed_and_redraws_stage_2(tmp_path):
    flags = _flags(
        xnli_proxy.command(
            "redraw-finetune-lr3e-05", 1, _args(tmp_path), xnli_proxy.BUDGET
        )[0]
    )
    assert flags["--seed"] == "1" and flags["--aux-seed"] == "1001"
    assert flags["--init-from"] == str(tmp_path / "english-only-seed1")
    assert flags["--learning-rate"] == "3e-5"
    assert not xnli_proxy.is_tuned_finetune("redraw-finetune-lr3e-05")
    # The second draw of the replay: its rates, finetune's --aux-seed.
    replay = _flags(
        xnli_proxy.command(
            "redraw-replay-meta-paper-100", 2, _args(tmp_path), xnli_proxy.BUDGET
        )[0]
    )
    assert replay["--seed"] == "2" and replay["--aux-seed"] == "1002"
    rates = tmp_path / "results" / "meta-paper-100-seed2" / "rates.json"
    assert replay["--rates-from"] == str(rates)
    assert "--learning-rate" not in replay  # the trainer's 2e-5, as finetune's
    for row in ("redraw-finetune", "redraw-finetune-lr1.5e-05"):
        assert not xnli_proxy.is_tuned_finetune(row)


def test_commands_share_the_seed_english_model(tmp_path):
    args = type(
        "Args",
        (),
        {"work_dir": str(tmp_path), "preset": "P", "data_dir": "D"},
    )
    cmd, out = xnli_proxy.command("meta-shared", 1, args, xnli_proxy.BUDGET)
    assert out == tmp_path / "meta-shared-seed1"
    assert cmd[1:3] == ["-m", "trainers.meta"]
    flags = _flags(cmd)
    assert flags["--init-from"] == str(tmp_path / "english-only-seed1")
    assert flags["--rates"] == "shared" and flags["--seed"] == "1"
    assert flags["--method-name"] == "meta-shared"
    cmd, _ = xnli_proxy.command("english-only", 1, args, xnli_proxy.BUDGET)
    flags = _flags(cmd)
    assert flags["--aux"] == "" and "--init-from" not in flags
    assert flags["--method-name"] == "english-only"
    cmd, out = xnli_proxy.command("english-only-fast", 2, args, xnli_proxy.BUDGET)
    assert out == tmp_path / "english-only-fast-seed2"
    flags = _flags(cmd)
    assert flags["--aux"] == "" and "--init-from" not in flags
    assert flags["--precision"] == "mixed_bfloat16"
    assert flags["--group-by-length"] is True
    cmd, _ = xnli_proxy.command("finetune-fast", 2, args, xnli_proxy.BUDGET)
    flags = _flags(cmd)
    assert cmd[1:3] == ["-m", "trainers.finetune"]
    assert flags["--init-from"] == str(tmp_path / "english-only-fast-seed2")
    assert flags["--precision"] == "mixed_bfloat16" and "--group-by-length" in flags
    # ... and finetune-fast-en32 from the float32 English model.
    flags = _flags(
        xnli_proxy.command("finetune-fast-en32", 2, args, xnli_proxy.BUDGET)[0]
    )
    assert flags["--init-from"] == str(tmp_path / "english-only-seed2")
    assert flags["--precision"] == "mixed_bfloat16" and "--group-by-length" in flags
    # The -v2 rows from the -v2 fast English model.
    flags = _flags(
        xnli_proxy.command("meta-paper-100-fast-v2", 2, args, xnli_proxy.BUDGET)[0]
    )
    assert flags["--init-from"] == str(tmp_path / "english-only-fast-v2-seed2")
    assert flags["--precision"] == "mixed_bfloat16" and "--group-by-length" in flags
    assert flags["--meta-init"] == "pretrained" and flags["--rounds"] == "10"
    # The English stage with one fast setting each.
    flags = _flags(
        xnli_proxy.command("english-only-bf16", 0, args, xnli_proxy.BUDGET)[0]
    )
    assert flags["--precision"] == "mixed_bfloat16" and "--group-by-length" not in flags
    assert flags["--aux"] == "" and "--init-from" not in flags
    flags = _flags(
        xnli_proxy.command("english-only-grouped", 0, args, xnli_proxy.BUDGET)[0]
    )
    assert flags["--group-by-length"] is True and "--precision" not in flags


def test_a_row_budget_replaces_the_common_one_and_no_flag_is_given_twice(tmp_path):
    args = _args(tmp_path)
    for method in [*xnli_proxy.ENGLISH, *xnli_proxy.METHODS]:
        flags = _flags(xnli_proxy.command(method, 0, args, xnli_proxy.BUDGET)[0])
        assert flags["--method-name"] == method
    flags = _flags(xnli_proxy.command("meta-paper-100", 0, args, xnli_proxy.BUDGET)[0])
    assert flags["--rounds"] == "10" and flags["--meta-updates-per-round"] == "10"
    assert flags["--meta-interval"] == "15" and flags["--meta-init"] == "pretrained"
    flags = _flags(xnli_proxy.command("meta", 0, args, xnli_proxy.BUDGET)[0])
    assert flags["--rounds"] == "4" and flags["--meta-updates-per-round"] == "3"
    # The rows measured from the English model keep that reading, whatever
    # the trainers' default.
    for method in ("meta", "meta-shared", "meta-joint", "meta-exp-exact-100"):
        flags = _flags(xnli_proxy.command(method, 0, args, xnli_proxy.BUDGET)[0])
        assert flags["--meta-init"] == "english", method
    for method in ("meta-paper-100-shared", "meta-paper-100-joint"):
        flags = _flags(xnli_proxy.command(method, 0, args, xnli_proxy.BUDGET)[0])
        assert flags["--meta-init"] == "pretrained", method
    # The paper-literal row at the strongest baseline's learning rate: the
    # same command as meta-paper-100 but for that rate and the row's name.
    ours, paper = (
        _flags(xnli_proxy.command(m, 0, args, xnli_proxy.BUDGET)[0])
        for m in ("meta-paper-100-lr3e-05", "meta-paper-100")
    )
    assert ours.pop("--learning-rate") == "3e-5" and "--learning-rate" not in paper
    assert ours.pop("--method-name") != paper.pop("--method-name")
    assert ours.pop("--output-dir") != paper.pop("--output-dir")
    assert ours == paper


def test_every_command_parses_and_names_its_row(tmp_path):
    """The trainers accept each command line, and name the run as the row."""
    from trainers import finetune, meta

    args = _args(tmp_path)
    for method in [*xnli_proxy.ENGLISH, *xnli_proxy.METHODS]:
        cmd, _ = xnli_proxy.command(method, 0, args, xnli_proxy.BUDGET)
        trainer = {"trainers.meta": meta, "trainers.finetune": finetune}[cmd[2]]
        parsed = trainer.build_parser().parse_args(cmd[3:])
        assert trainer.method_name(parsed) == method


def _result(method, seed, correct, wall, resumed=False):
    rng = np.random.default_rng(seed)
    targets = ["ar", "sw"]
    hits = {x: (rng.random(200) < correct).astype(int).tolist() for x in targets}
    accuracy = {x: float(np.mean(v)) for x, v in hits.items()}
    return {
        "method": method,
        "seed": seed,
        "accuracy": accuracy,
        "targets": targets,
        "correct": hits,
        "avg_target": float(np.mean(list(accuracy.values()))),
        "avg_all": float(np.mean(list(accuracy.values()))),
        "wall_time_s": wall,
        "resumed": resumed,
    }


@pytest.fixture
def results_dir(tmp_path):
    runs = [
        _result("finetune", 0, 0.6, 600),
        _result("finetune", 1, 0.6, 720),
        _result("meta", 0, 0.6, 1200),
        _result("meta", 1, 0.6, 60, resumed=True),
        _result("freeze-bottom-3", 0, 0.6, 30, resumed=True),
    ]
    for r in runs:
        d = tmp_path / f"{r['method']}-seed{r['seed']}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(r))
    return tmp_path


def test_table_leaves_resumed_runs_out_of_the_wall_time(results_dir):
    text = xnli_proxy.table(results_dir)
    assert "| finetune | 2 |" in text and "| meta | 2 |" in text
    assert "finetune 11.0 (2), meta 20.0 (1), freeze-bottom-3 n/a" in text


def test_table_pairs_every_row_with_the_strongest_tuned_baseline_too(tmp_path):
    runs = [
        *(_result("finetune", s, 0.55, 600) for s in range(3)),
        *(_result("finetune-lr3e-05", s, 0.65, 600) for s in range(3)),
        _result("finetune-lr1e-05", 0, 0.9, 600),  # one seed: not counted yet
        *(_result("finetune-fast", s, 0.95, 600) for s in range(3)),  # not float32
        *(_result("meta", s, 0.65, 600) for s in range(3)),
    ]
    for r in runs:
        d = tmp_path / f"{r['method']}-seed{r['seed']}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(r))
    from trainers.reporting import strongest_baseline

    assert strongest_baseline(runs, xnli_proxy.is_tuned_finetune) == "finetune-lr3e-05"
    text = xnli_proxy.table(tmp_path)
    header, _, *rows = text.split("\n\n")[0].splitlines()
    assert header.endswith("| p vs finetune | p vs finetune-lr3e-05 |")
    cells = {row.split(" | ")[0][2:]: row.split(" | ")[-2:] for row in rows}
    expected = {
        m: [f"{p:.3f}" for p in (compare(runs, "finetune")[m][1], p_best)]
        for m, p_best in (
            (m, compare(runs, "finetune-lr3e-05")[m][1])
            for m in ("meta", "finetune-lr1e-05", "finetune-fast")
        )
    }
    for method, (vs_finetune, vs_best) in expected.items():
        assert cells[method] == [vs_finetune, vs_best + " |"], method
    assert cells["finetune"][0] == "" and cells["finetune-lr3e-05"][1] == " |"
    assert "strongest learning-rate-tuned baseline: finetune-lr3e-05" in text


def test_driver_skips_runs_with_results(results_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    argv = ["--results-dir", str(results_dir), "--work-dir", str(tmp_path / "w")]
    argv += ["--dry-run", "--only", "finetune,freeze-bottom-3"]
    assert xnli_proxy.main(argv) == 0
    planned = [r.getMessage().split(": ")[0] for r in caplog.records]
    # finetune 0/1 and freeze-bottom-3 0 have results; english-only never does.
    assert planned == [
        "english-only seed 0",
        "english-only seed 1",
        "freeze-bottom-3 seed 1",
        "english-only seed 2",
        "finetune seed 2",
    ]


def test_compare_pairs_a_method_with_the_baseline_runs_of_its_seeds():
    base0 = _result("finetune", 0, 0.5, 1)
    base1 = _result("finetune", 1, 0.9, 1)
    same_as_seed0 = dict(base0, method="freeze-bottom-3")
    tests = compare([base0, base1, same_as_seed0], "finetune", samples=200)
    assert tests["freeze-bottom-3"] == (0.0, 1.0)  # against seed 0 only
    other = dict(base0, method="layer-decay-0.9", seed=7)  # no shared seed
    delta, _ = compare([base0, base1, other], "finetune", samples=200)[
        "layer-decay-0.9"
    ]
    expected = base0["avg_target"] - (base0["avg_target"] + base1["avg_target"]) / 2
    assert delta == pytest.approx(expected)


def test_a_missing_english_model_is_retrained_only_when_needed(tmp_path):
    args = type(
        "Args",
        (),
        {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "res")},
    )
    runs = [("english-only", 0), ("finetune-lr5e-05", 0), ("english-only", 1)]
    (tmp_path / "res" / "english-only-seed0").mkdir(parents=True)
    assert xnli_proxy._needs_stage1(0, runs, args)  # finetune-lr5e-05 still to run
    assert not xnli_proxy._needs_stage1(1, runs, args)  # nothing else of seed 1
    (tmp_path / "res" / "finetune-lr5e-05-seed0").mkdir()
    (tmp_path / "res" / "finetune-lr5e-05-seed0" / "results.json").write_text("{}")
    assert not xnli_proxy._needs_stage1(0, runs, args)  # all of seed 0 is done
    (tmp_path / "res" / "finetune-lr5e-05-seed0" / "results.json").unlink()
    stage1 = tmp_path / "work" / "english-only-seed0" / "stage1"
    stage1.mkdir(parents=True)
    (stage1 / "task.json").write_text("{}")
    assert not xnli_proxy._needs_stage1(0, runs, args)  # the model is there
    # The fast rows start from the fast English model, and only they.
    fast = [("english-only-fast", 0), ("finetune-fast", 0)]
    assert not xnli_proxy._needs_stage1(0, runs + fast, args)
    assert xnli_proxy._needs_stage1(0, runs + fast, args, "english-only-fast")
    assert not xnli_proxy._needs_stage1(0, runs, args, "english-only-fast")


def test_reproduction_check_compares_every_example(tmp_path):
    for name, hits in (("new", [1, 0, 1]), ("old", [1, 0, 1]), ("other", [1, 1, 1])):
        (tmp_path / name).mkdir()
        payload = {"correct": {"ar": hits, "en": [0, 1]}}
        (tmp_path / name / "results.json").write_text(json.dumps(payload))
    assert xnli_proxy._check_reproduced(tmp_path / "new", tmp_path / "old")
    assert not xnli_proxy._check_reproduced(tmp_path / "other", tmp_path / "old")


def test_seeds_keeps_only_those_seeds_of_the_plan(tmp_path, caplog):
    assert xnli_proxy.plan(3, 2, {"meta-joint"}, seeds={1}) == [
        ("english-only", 1),
        ("meta-joint", 1),
    ]
    assert xnli_proxy.plan(3, 2, {"finetune"}, seeds={0, 2}) == [
        ("english-only", 0),
        ("finetune", 0),
        ("english-only", 2),
        ("finetune", 2),
    ]
    caplog.set_level("INFO")
    argv = ["--results-dir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w")]
    argv += ["--dry-run", "--only", "meta-paper-100-joint", "--seeds", "2"]
    assert xnli_proxy.main(argv) == 0
    planned = [r.getMessage().split(": ")[0] for r in caplog.records]
    assert planned == ["english-only seed 2", "meta-paper-100-joint seed 2"]


@pytest.mark.parametrize(
    "seeds, message",
    [
        ("1,x", "--seeds 1,x: must be seeds separated by commas, e.g. 1,2"),
        ("-1", "--seeds -1: must be seeds separated by commas, e.g. 1,2"),
        ("", "--seeds : must be seeds separated by commas, e.g. 1,2"),
        ("0,3", "--seeds 0,3: beyond the planned seeds 0..2 (raise --seeds-main"),
    ],
)
def test_bad_seeds_are_one_line_errors(seeds, message, tmp_path, capsys):
    argv = ["--work-dir", str(tmp_path / "w"), "--dry-run", "--seeds", seeds]
    with pytest.raises(SystemExit) as exit_:
        xnli_proxy.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_only_runs_with_meta_steps_get_a_heat_map(tmp_path):
    assert not xnli_proxy.has_meta_steps(tmp_path)  # a baseline: no meta_stats.json
    (tmp_path / "meta_stats.json").write_text('{"phi_updates": 0}')  # --rounds 0
    assert not xnli_proxy.has_meta_steps(tmp_path)
    (tmp_path / "meta_stats.json").write_text('{"phi_updates": 100}')
    assert xnli_proxy.has_meta_steps(tmp_path)


def test_per_seed_pairs_each_row_with_the_baseline_of_its_seed(tmp_path, capsys):
    # avg_target of _result is the mean hit rate of random 0/1 vectors: read it back
    runs = [
        _result("finetune", 0, 0.55, 600),
        _result("finetune", 1, 0.55, 600),
        _result("meta", 1, 0.70, 600),  # seed 0 not run
        _result("freeze-bottom-3", 0, 0.40, 600),
        _result("freeze-bottom-3", 1, 0.45, 600),
    ]
    for r in runs:
        d = tmp_path / f"{r['method']}-seed{r['seed']}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(r))
    avg = {(r["method"], r["seed"]): 100 * r["avg_target"] for r in runs}
    text = xnli_proxy.per_seed(tmp_path)
    header, rule, *rows = text.splitlines()
    assert header == (
        "| row | seed 0 | seed 1 | − finetune, seed 0 / 1 "
        "| mean ± std of the differences (seeds) | p, paired t over seeds |"
    )
    split = [[c.strip() for c in row.split("|")[1:-1]] for row in rows]
    cells = {row[0]: row[1:] for row in split}
    assert list(cells) == ["finetune", "meta", "freeze-bottom-3"]  # the plan's order
    assert cells["finetune"] == [
        f"{avg['finetune', 0]:.2f}",
        f"{avg['finetune', 1]:.2f}",
        "",
        "",
        "",
    ]
    meta = avg["meta", 1] - avg["finetune", 1]
    assert meta > 0
    assert cells["meta"] == [
        "",
        f"{avg['meta', 1]:.2f}",
        f"· / +{meta:.2f}",
        f"+{meta:.2f} (1)",
        "",  # no test over one seed
    ]
    frozen = [avg["freeze-bottom-3", s] - avg["finetune", s] for s in (0, 1)]
    assert max(frozen) < 0  # printed with a minus sign
    assert cells["freeze-bottom-3"][2:] == [
        f"−{-frozen[0]:.2f} / −{-frozen[1]:.2f}",
        f"−{-np.mean(frozen):.2f} ± {np.std(frozen, ddof=1):.2f} (2)",
        # one degree of freedom: t is Cauchy, p = 1 - 2 atan(|t|) / π
        f"{1 - 2 * np.arctan(abs(np.mean(frozen)) / (np.std(frozen, ddof=1) / np.sqrt(2))) / np.pi:.3f}",
    ]

    assert xnli_proxy.main(["--per-seed", "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == text
    # a baseline with no finished run: one line, not a table of "·"
    for report in ("--per-seed", "--table"):
        argv = [report, "--results-dir", str(tmp_path), "--baseline", "finetun"]
        assert _refused(capsys, argv) == (
            "--baseline finetun: no finished run of that row in "
            f"{tmp_path}; rows: finetune, freeze-bottom-3, meta"
        )
    assert _refused(capsys, ["--per-seed", "--table"]) == (  # one report at a time
        "argument --table: not allowed with argument --per-seed (see --help)"
    )


def _refused(capsys, argv):
    """The driver's one-line error for `argv` (exit 2), without its prefix."""
    with pytest.raises(SystemExit) as stop:
        xnli_proxy.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    prefix = "benchmarks.xnli_proxy: error: "
    assert err.startswith(prefix) and err.endswith("\n") and err.count("\n") == 1
    return err[len(prefix) : -1]
