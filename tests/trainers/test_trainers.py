"""Trainers end to end on a tiny encoder and generated multilingual data."""

import json
import logging
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import time

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_metaopt.data import load_pairs
from keras_metaopt.testing import make_tiny_preset
from probes import horizon as probe_horizon
from probes import metagrad as probe_metagrad
from trainers import evaluate as evaluate_cli
from trainers import finetune, meta
from trainers.evaluation import evaluate
from trainers.learner_init import fresh_head
from trainers.reporting import paired_bootstrap

LANGS = ("en", "de", "el", "ur")
WORDS = {
    "en": "cat dog man woman runs sleeps eats house car green",
    "de": "katze hund mann frau läuft schläft isst haus auto grün",
    "el": "γάτα σκύλος άντρας γυναίκα τρέχει κοιμάται τρώει σπίτι αυτοκίνητο πράσινο",
    "ur": "بلی کتا آدمی عورت دوڑتا سوتا کھاتا گھر گاڑی سبز",
}
LABELS = ("entailment", "neutral", "contradiction")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _write(path, rows):
    lines = ["premise\thypothesis\tlabel"] + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _rows(lang, n, seed):
    rng = np.random.default_rng(seed)
    words = WORDS[lang].split()
    rows = []
    for i in range(n):
        premise = " ".join(rng.choice(words, 6))
        # Aligned across languages: row i has label i % 3 everywhere.
        hypothesis = " ".join(rng.choice(words, 3))
        rows.append(
            ('"' + premise if i % 7 == 0 else premise, hypothesis, LABELS[i % 3])
        )
    return rows


def make_workspace(root):
    """`(root, data_dir, preset)`: the tiny XNLI-like data (96 English pairs,
    48 per other language) and a tiny preset with its vocabulary, in `root`."""
    data_dir = root / "data"
    data_dir.mkdir()
    _write(data_dir / "train_mt.en.tsv", _rows("en", 96, 0))
    for i, lang in enumerate(LANGS):
        _write(data_dir / f"dev.{lang}.tsv", _rows(lang, 48, 10 + i))
    texts = [t for p in data_dir.glob("*.tsv") for t in p.read_text().split()]
    preset = make_tiny_preset(
        texts, root / "preset", vocabulary_size=400, sequence_length=32
    )
    return root, data_dir, preset


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("trainers"))


def run_as_user(*command, timeout=300, env=None):
    """`python -m COMMAND` as a user runs it (no TF_CPP_MIN_LOG_LEVEL of our
    own; `env` added to the environment), output captured."""
    env = {**os.environ, **(env or {})}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _common(data_dir, preset, out, *extra):
    return [
        "--data-dir", str(data_dir), "--preset", str(preset), "--output-dir", str(out),
        "--aux", "el,ur", "--aux-split", "dev[:24]", "--eval-split", "dev[24:]",
        "--batch-size", "8", "--sequence-length", "32", "--en-steps", "6",
        "--aux-steps", "4", "--checkpoint-every", "3", "--log-every", "3", *extra,
    ]  # fmt: skip


META = ("--rounds", "2", "--meta-updates-per-round", "2", "--meta-interval", "3")


def _tensors(run_dir, prefix):
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [
            (e.step, float(tf.make_ndarray(e.tensor_proto)))
            for e in events.Tensors(tag)
        ]
        for tag in events.Tags()["tensors"]
        if tag.startswith(prefix)
    }


def _weights(preset_dir):
    model = keras_hub.models.TextClassifier.from_preset(str(preset_dir))
    return [v.numpy() for v in model.weights]


@pytest.fixture(scope="module")
def meta_run(workspace):
    root, data_dir, preset = workspace
    out = root / "meta"
    results = meta.main(_common(data_dir, preset, out, *META))
    return out, results


@pytest.mark.slow
def test_meta_end_to_end_writes_checkpoints_tensorboard_and_results(meta_run):
    out, results = meta_run
    for stage in ("en", "meta", "aux"):
        assert tf.train.latest_checkpoint(str(out / "checkpoints" / stage)), stage
    rates = json.loads((out / "rates.json").read_text())["rates"]
    assert list(rates) == ["transformer_layer_0", "transformer_layer_1", "head"]

    scalars = _tensors(out, "rates/")
    assert sorted(scalars) == sorted(f"rates/{g}" for g in rates)
    steps = [s for s, _ in scalars["rates/head"]]
    assert steps == [1, 2, 3, 4]  # rounds × updates per round
    assert scalars["rates/head"][-1][1] == pytest.approx(rates["head"], abs=1e-6)
    held_out = _tensors(out, "meta/heldout_language")["meta/heldout_language"]
    assert [v for _, v in held_out][::2] == [v for _, v in held_out][1::2]  # per round
    assert {v for _, v in held_out} <= {0.0, 1.0, 2.0}
    accuracy = _tensors(out, "accuracy/")
    assert sorted(accuracy) == [f"accuracy/{x}" for x in sorted(LANGS)]

    saved = json.loads((out / "results.json").read_text())
    assert saved["method"] == "meta" and saved["targets"] == ["de"]
    assert sorted(saved["accuracy"]) == sorted(LANGS)
    assert all(len(saved["correct"][x]) == 24 for x in LANGS)
    for lang in LANGS:
        assert saved["accuracy"][lang] == pytest.approx(np.mean(saved["correct"][lang]))
    table = (out / "results.md").read_text()
    assert table.startswith(
        "| method | seeds | de | el | en | ur | avg target | avg all |"
    )
    assert results["avg_all"] == pytest.approx(
        np.mean(list(saved["accuracy"].values()))
    )
    run = json.loads((out / "run.json").read_text())
    assert run["train_languages"] == ["en", "el", "ur"] and run["sequence_length"] == 32
    assert (out / "model" / "task.json").is_file()

    from tools.plot_rates import plot_rates

    png = plot_rates(out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_rounds_0_runs_stage_3_with_the_initial_rates_of_the_same_seed(
    workspace, meta_run
):
    root, data_dir, preset = workspace
    out = root / "meta-rounds-0"
    flags = ("--init-from", str(meta_run[0]), "--rounds", "0")
    result = meta.main(_common(data_dir, preset, out, *flags))
    assert result["method"] == "meta-rounds-0"
    assert not (out / "checkpoints" / "en").exists()  # stage 1 reused
    assert tf.train.latest_checkpoint(str(out / "checkpoints" / "aux"))
    stats = json.loads((out / "meta_stats.json").read_text())
    learned = json.loads((meta_run[0] / "meta_stats.json").read_text())
    assert stats["phi_updates"] == 0 and learned["phi_updates"] == 4
    assert stats["phi_start"] == stats["phi_end"] == learned["phi_start"]
    assert stats["displacement_max"] == 0.0
    rates = json.loads((out / "rates.json").read_text())["rates"]
    initial = {g: 1 / (1 + np.exp(-phi)) for g, phi in learned["phi_start"].items()}
    assert rates == pytest.approx(initial, rel=1e-6)
    assert rates != pytest.approx(
        json.loads((meta_run[0] / "rates.json").read_text())["rates"], rel=1e-6
    )


def _same_weights(run_a, run_b):
    """The largest absolute difference between two runs' final weights."""
    a, b = _weights(run_a / "model"), _weights(run_b / "model")
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.slow
def test_finetune_rates_from_a_meta_run_replays_its_stage_3_bit_for_bit(
    workspace, meta_run
):
    root, data_dir, preset = workspace
    out = root / "replay"
    flags = ("--init-from", str(meta_run[0]), "--rates-from", str(meta_run[0]))
    result = finetune.main(_common(data_dir, preset, out, *flags))
    assert result["method"] == "fixed-rates"
    replayed = json.loads((out / "results.json").read_text())
    original = json.loads((meta_run[0] / "results.json").read_text())
    assert replayed["correct"] == original["correct"]
    assert _same_weights(out, meta_run[0]) == 0.0
    assert json.loads((out / "rates.json").read_text())["rates"] == pytest.approx(
        json.loads((meta_run[0] / "rates.json").read_text())["rates"], rel=1e-6
    )


@pytest.mark.slow
def test_meta_stage_3_at_rate_1_is_plain_fine_tuning(workspace, meta_run):
    """Common random numbers: with λ = exp(0) = 1 and no meta-training, the
    meta trainer's stage 3 draws finetune's batches and dropout masks, so the
    two end with the same weights (to the optimizers' round-off)."""
    root, data_dir, preset = workspace
    runs = {}
    for name, trainer, extra in (
        # The baselines test's "finetune" run: whichever test comes second
        # finds it finished.
        ("finetune", finetune, ()),
        (
            "rate-1",
            meta,
            ("--rounds", "0", "--rates-param", "exp", "--initial-phi", "0"),
        ),
    ):
        runs[name] = root / name
        flags = ("--init-from", str(meta_run[0]), *extra)
        trainer.main(_common(data_dir, preset, runs[name], *flags))
    rates = json.loads((runs["rate-1"] / "rates.json").read_text())["rates"]
    assert set(rates.values()) == {1.0}
    assert _same_weights(runs["finetune"], runs["rate-1"]) < 1e-6
    # The meta run itself (rates < 1) moved the weights elsewhere.
    assert _same_weights(runs["finetune"], meta_run[0]) > 1e-6


@pytest.mark.slow
def test_aux_seed_draws_only_the_auxiliary_stage_anew(workspace, meta_run):
    """From a given English model, --seed decides only the auxiliary stage's
    batches and masks: --aux-seed 5 draws them as --seed 5 does, and the run
    stays seed 0 (so it pairs with the other runs of seed 0)."""
    root, data_dir, preset = workspace
    runs = {}
    for name, extra in (
        ("finetune", ()),  # the baselines test's run
        ("aux-seed-5", ("--aux-seed", "5")),
        ("seed-5", ("--seed", "5")),
    ):
        runs[name] = root / name
        flags = ("--init-from", str(meta_run[0]), *extra)
        finetune.main(_common(data_dir, preset, runs[name], *flags))
    assert json.loads((runs["aux-seed-5"] / "results.json").read_text())["seed"] == 0
    assert _same_weights(runs["aux-seed-5"], runs["seed-5"]) == 0.0
    assert _same_weights(runs["aux-seed-5"], runs["finetune"]) > 1e-6


@pytest.mark.slow
def test_serving_reads_the_run_directory_the_trainer_wrote(meta_run):
    """One owner per file (keras_metaopt.formats): what trainers.meta writes is
    what serving's RunDir reads."""
    from keras_metaopt.formats import LABEL_NAMES
    from serving.export.run_dir import RunDir

    out, _ = meta_run
    run = RunDir(out)
    written = json.loads((out / "rates.json").read_text())
    assert run.rates == written["rates"]
    assert run.rates_mode == written["mode"] == "layerwise"
    assert tuple(run.labels) == LABEL_NAMES
    assert run.metadata()["train_languages"] == ["en", "el", "ur"]
    assert run.load_classifier().preprocessor.sequence_length == 32


@pytest.mark.slow
def test_every_part_of_a_run_directory_has_one_owner_and_reads_back(meta_run):
    """Everything trainers.meta leaves in its run directory is named in
    keras_metaopt.formats.RUN_FILES, and each part reads back through its one
    reader: run.json (run_record), rates.json (rates_file), stage1/ (a
    classifier preset), results.json (the reports), tb/ (plot_rates)."""
    import fnmatch

    from keras_metaopt import formats
    from keras_metaopt.rates_file import read_rates
    from keras_metaopt.run_record import read_run_record, recorded_args
    from tools.plot_rates import rates_param
    from trainers.reporting import load_results

    out, _ = meta_run
    for entry in out.iterdir():
        assert any(fnmatch.fnmatch(entry.name, p) for p in formats.RUN_FILES), entry
    record = read_run_record(out)
    assert record["method"] == "meta" and record["seed"] == 0
    assert recorded_args(out)["rates_param"] == rates_param(out) == "sigmoid"
    assert record["command"].startswith("python -m trainers.meta ")
    rates = read_rates(out / formats.RATES_JSON)
    assert rates.rates_param == "sigmoid" and rates.mode == "layerwise"
    assert set(rates.phi) == set(rates.rates)
    assert formats.stage1_preset(out) == out / formats.STAGE1_DIR
    assert formats.holds_classifier(formats.stage1_preset(out))
    assert formats.holds_classifier(out / formats.MODEL_DIR)
    (results,) = load_results([out])
    assert results["method"] == "meta" and set(results["accuracy"]) >= {"de"}
    assert (out / formats.TB_DIR).is_dir() and (out / formats.RESULTS_MD).is_file()


@pytest.mark.slow
def test_a_finished_run_is_not_redone(workspace, meta_run, caplog):
    root, data_dir, preset = workspace
    out, _ = meta_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with caplog.at_level(logging.INFO):
        again = meta.main(_common(data_dir, preset, out, *META))
    assert again == json.loads((out / "results.json").read_text())
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert (
        f"{out} has finished; its results are in {out}/results.json (add "
        "--overwrite to run it again)" in caplog.text
    )
    assert "data:" not in caplog.text and "Loaded" not in caplog.text  # read nothing

    # The same through the real command line: exit 0, that one line on stderr
    # and nothing else (no TensorFlow start-up lines), nothing rewritten.
    done = run_as_user("trainers.meta", *_common(data_dir, preset, out, *META))
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    (line,) = done.stderr.splitlines()
    assert line.endswith(
        f" INFO keras_metaopt.trainers: {out} has finished; its results are in "
        f"{out}/results.json (add --overwrite to run it again)"
    )
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.slow
def test_an_unfinished_run_says_how_to_resume_it(workspace, meta_run, tmp_path, capsys):
    root, data_dir, preset = workspace
    out, _ = meta_run
    run = json.loads((out / "run.json").read_text())
    command = "python -m trainers.meta " + shlex.join(
        _common(data_dir, preset, out, *META)
    )
    assert run["command"] == command  # what resumes it, recorded when it started
    unfinished = tmp_path / "running"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps(run))
    from serving.export import command as export

    assert (
        export.main(["--run-dir", str(unfinished), "--out", str(tmp_path / "1")]) == 2
    )
    assert capsys.readouterr().err == (
        f"serving.export: error: run {unfinished} has not finished: no model/ (its "
        f"final model) yet; resume it with: {command}; then export it\n"
    )
    assert not (tmp_path / "1").exists()
    argv = _common(data_dir, preset, tmp_path / "b", "--init-from", str(unfinished))
    with pytest.raises(SystemExit) as stop:
        finetune.main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"trainers.finetune: error: --init-from run {unfinished} has not finished: "
        f"no stage1/ (its English model) yet; resume it with: {command}\n"
    )


@pytest.mark.slow
def test_baselines_share_stage1_and_do_what_they_say(workspace, meta_run):
    root, data_dir, preset = workspace
    stage1 = meta_run[0] / "stage1"
    runs = {}
    for name, extra in {
        "finetune": (),
        "freeze-bottom-1": ("--freeze-bottom", "1"),
        "layer-decay-0.9": ("--layer-decay", "0.9"),
    }.items():
        out = root / name
        result = finetune.main(
            _common(data_dir, preset, out, "--init-from", str(meta_run[0]), *extra)
        )
        assert result["method"] == name
        assert not (out / "checkpoints" / "en").exists()  # stage 1 reused
        runs[name] = out

    rates = json.loads((runs["layer-decay-0.9"] / "rates.json").read_text())["rates"]
    assert rates == pytest.approx(
        {"transformer_layer_0": 0.9**3, "transformer_layer_1": 0.9**2, "head": 1.0}
    )
    model = keras_hub.models.TextClassifier.from_preset(
        str(runs["freeze-bottom-1"] / "model")
    )
    reference = keras_hub.models.TextClassifier.from_preset(str(stage1))
    moved = {}
    for a, b in zip(model.weights, reference.weights):
        group = a.path.split("/")[0]
        moved[group] = moved.get(group, 0.0) + float(
            np.abs(a.numpy() - b.numpy()).max()
        )
    assert moved["transformer_layer_0"] == 0.0
    assert moved["token_embedding"] == 0.0
    assert moved["transformer_layer_1"] > 0.0 and moved["logits"] > 0.0

    table_path = root / "table.md"
    evaluate_cli.main(
        [str(p) for p in (*runs.values(), meta_run[0])] + ["--output", str(table_path)]
    )
    table = table_path.read_text()
    assert "p vs finetune" in table.splitlines()[0]
    assert sum(line.startswith("| ") for line in table.splitlines()) == 5  # header + 4


@pytest.mark.slow
def test_english_only_evaluates_the_saved_english_model_with_its_head(
    workspace, meta_run
):
    # Reloading a saved classifier must keep its trained head: the per-example
    # predictions of the run equal those of the stage-1 preset loaded as is.
    root, data_dir, preset = workspace
    out = root / "english-only"
    result = finetune.main(
        _common(data_dir, preset, out, "--init-from", str(meta_run[0]), "--aux", "")
    )
    assert result["method"] == "english-only"
    reference = keras_hub.models.TextClassifier.from_preset(str(meta_run[0] / "stage1"))
    reference.preprocessor.sequence_length = 32
    pairs = {x: load_pairs(data_dir, "dev[24:]", x) for x in LANGS}
    expected = evaluate(reference, pairs, batch_size=64)
    for lang in LANGS:
        assert result["correct"][lang] == expected[lang]["correct"]
    for a, b in zip(_weights(out / "model"), _weights(meta_run[0] / "stage1")):
        np.testing.assert_array_equal(a, b)


class _LengthClassifier:
    """Predicts (real length + first word id) % 3: every example's own answer."""

    def __init__(self, preprocessor):
        self.preprocessor = preprocessor

    def __call__(self, x, training=False):
        length = tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32), axis=1)
        return tf.one_hot((length + x["token_ids"][:, 1]) % 3, 3)


def test_evaluate_batches_by_length_and_reports_in_file_order(workspace, tmp_path):
    # evaluate() sorts examples by length before batching; its per-example
    # results must still be in file order, with no real token cut.
    root, data_dir, preset = workspace
    rng = np.random.default_rng(3)
    words = WORDS["en"].split()
    rows = [
        (
            " ".join(rng.choice(words, rng.integers(1, 14))),
            " ".join(rng.choice(words, rng.integers(1, 8))),
            LABELS[rng.integers(3)],
        )
        for _ in range(70)
    ]
    _write(tmp_path / "dev.en.tsv", rows)
    pairs = load_pairs(tmp_path, "dev", "en")
    pre = keras_hub.models.TextClassifierPreprocessor.from_preset(
        str(preset), sequence_length=32
    )
    expected = []
    for premise, hypothesis, label in rows:
        x = pre(x=(tf.constant([premise]), tf.constant([hypothesis])))
        length = int(np.sum(x["padding_mask"]))
        predicted = (length + int(x["token_ids"][0, 1])) % 3
        expected.append(int(predicted == LABELS.index(label)))
    assert 0 < sum(expected) < len(expected)  # else the check below is vacuous
    result = evaluate(_LengthClassifier(pre), {"en": pairs}, batch_size=16)["en"]
    assert result["correct"] == expected
    assert result["accuracy"] == pytest.approx(np.mean(expected))


@pytest.mark.slow
def test_probe_horizon_resets_to_the_english_model_for_every_rate(workspace, meta_run):
    root, data_dir, preset = workspace
    out = root / "probe"
    args = _common(data_dir, preset, out, "--init-from", str(meta_run[0]))
    args += ["--learning-rate", "1e-3", "--rates", "1,0", "--horizons", "2,4"]
    table = probe_horizon.main(args + ["--heldout", "ur", "--heldout-examples", "16"])
    start = json.loads((out / "probe.json").read_text())["loss_at_theta_en"]
    # λ = 1 runs first: λ = 0 must start again from θ_En and stay there.
    assert table[0.0] == pytest.approx({2: start, 4: start}, abs=1e-6)
    assert abs(table[1.0][4] - start) > 1e-4  # λ = 1 trains
    assert "| 4 |" in (out / "probe.md").read_text()


@pytest.mark.slow
def test_probe_metagrad_first_order_is_exact_for_one_step(workspace, meta_run):
    # One inner step: Adam's first step does not depend on φ, so the
    # first-order meta-gradient is the true derivative; the re-run windows
    # must agree with it up to the O(ε²) error of the central difference.
    root, data_dir, preset = workspace
    out = root / "probe-metagrad"
    args = _common(data_dir, preset, out, "--init-from", str(meta_run[0]))
    args += ["--learning-rate", "5e-2", "--meta-interval", "1", "--epsilon", "1e-2"]
    report = probe_metagrad.main(args + ["--heldout", "ur", "--phi", "0.5"])
    assert report["phi0"] == pytest.approx([0.5] * len(report["groups"]))
    assert report["heldout_batches"] == 3  # 24 pairs, batches of 8
    assert report["heldout_loss_repeat"] == pytest.approx(
        report["heldout_loss"], abs=1e-6
    )
    for name, check in report["directional"].items():
        assert abs(check["first_order"]) > 1e-3, name  # not vacuous
        assert check["finite_difference"] == pytest.approx(
            check["first_order"], rel=0.03
        ), name
    first = report["directional"]["first-order"]["first_order"]
    assert first == pytest.approx(np.linalg.norm(report["meta_gradient_mean"]))
    assert "| first-order |" in (out / "probe.md").read_text()


@pytest.mark.slow
def test_probe_metagrad_longer_window_differs_from_first_order(workspace, meta_run):
    root, data_dir, preset = workspace
    out = root / "probe-metagrad-long"
    args = _common(data_dir, preset, out, "--init-from", str(meta_run[0]))
    args += ["--learning-rate", "1e-2", "--meta-interval", "6", "--epsilon", "1e-2"]
    args += ["--heldout", "ur", "--phi", "random", "--meta-gradient", "exact"]
    report = probe_metagrad.main(args)
    assert len(set(np.round(report["phi0"], 6))) == len(report["groups"])
    check = report["directional"]["uniform"]
    # Later steps depend on φ through the trajectory: the gap is real.
    gap = abs(check["finite_difference"] - check["first_order"])
    assert gap > 0.03 * abs(check["first_order"])
    # The exact meta-gradient predicts every re-run window's slope.
    for name, check in report["directional"].items():
        assert check["exact"] == pytest.approx(check["finite_difference"], rel=0.03), (
            name
        )
    assert "exact ⟨g*,u⟩" in (out / "probe.md").read_text()


def test_paired_bootstrap_detects_a_real_difference():
    rng = np.random.default_rng(0)
    b = (rng.random(2000) < 0.6).astype(int)
    a = b.copy()
    flip = rng.choice(np.flatnonzero(a == 0), 120, replace=False)
    a[flip] = 1  # a is 6 points better on the same examples
    delta, p = paired_bootstrap(a, b, samples=2000)
    assert delta == pytest.approx(0.06)
    assert p < 0.001
    delta, p = paired_bootstrap(b, b, samples=100)
    assert (delta, p) == (0.0, 1.0)
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:-1])


def test_paired_bootstrap_in_chunks_draws_what_one_array_draws(monkeypatch):
    from trainers import reporting

    rng = np.random.default_rng(1)
    a, b = (rng.random((2, 500)) < 0.6).astype(int)
    diff = (a - b).astype(float)
    index = np.random.default_rng(0).integers(0, 500, size=(301, 500))
    resampled = diff[index].mean(axis=1)
    expected = np.mean(np.abs(resampled - diff.mean()) >= abs(diff.mean()))
    assert 0.05 < expected < 0.95  # a p-value that the draws decide
    monkeypatch.setattr(reporting, "_BOOTSTRAP_CHUNK", 7 * 500)  # 43 chunks
    assert paired_bootstrap(a, b, samples=301) == (diff.mean(), expected)


@pytest.fixture(scope="module")
def no_dropout(workspace):
    """A dropout-free preset and its single-device meta run (dropout masks
    are drawn per replica, so only dropout-free runs can match exactly)."""
    root, data_dir, _ = workspace
    texts = [t for p in data_dir.glob("*.tsv") for t in p.read_text().split()]
    preset = make_tiny_preset(
        texts,
        root / "preset-nodrop",
        vocabulary_size=400,
        sequence_length=32,
        dropout=0.0,
    )
    out = root / "strategy-default"
    meta.main(_common(data_dir, preset, out, *META, "--strategy", "default"))
    return preset, json.loads((out / "rates.json").read_text())["phi"]


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_gives_the_single_device_rates(
    workspace, no_dropout
):
    # In a fresh process: collective ops of several MirroredStrategy objects
    # in one process (other tests make some) can collide.
    root, data_dir, _ = workspace
    preset, single = no_dropout
    out = root / "strategy-mirrored"
    args = _common(
        data_dir, preset, out, *META, "--strategy", "mirrored", "--cpu-replicas", "2"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "trainers.meta", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s)" in done.stderr
    # Output redirected, as to a file or a pipe: progress as plain log lines,
    # no progress bar's \r, \b or colours (issue 25).
    for text in (done.stdout, done.stderr):
        assert "\r" not in text and "\b" not in text and "\x1b" not in text
    assert " INFO keras_metaopt.progress: en: step 6/6 (100%), loss " in done.stderr
    assert json.loads((out / "rates.json").read_text())["phi"] == pytest.approx(
        single, abs=1e-5
    )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiworker_strategy_with_two_processes_gives_the_single_process_rates(
    workspace, no_dropout
):
    root, data_dir, _ = workspace
    preset, single = no_dropout
    out = root / "strategy-multiworker"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    command = [
        sys.executable, "-m", "trainers.meta",
        *_common(data_dir, preset, out, *META, "--strategy", "multiworker"),
    ]  # fmt: skip
    workers = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(tf_config)
        )
        workers.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    assert "CollectiveAllReduceStrategy with 2 replica(s)" in stderr  # = MultiWorker…
    assert json.loads((out / "rates.json").read_text())["phi"] == pytest.approx(
        single, abs=1e-5
    )
    assert (out / ".worker-worker-1" / "rates.json").is_file()  # not the chief's files


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_rates_and_weights(workspace, meta_run):
    root, data_dir, preset = workspace
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def command(out):
        args = _common(data_dir, preset, out, *META, "--init-from", str(meta_run[0]))
        args[args.index("--checkpoint-every") + 1] = "1"
        return [sys.executable, "-m", "trainers.meta", *args]

    # The uninterrupted reference is `meta_run` itself: the same flags (the
    # checkpoint interval is resume-safe) from the same English model.
    uninterrupted = meta_run[0]
    out = root / "killed"
    process = subprocess.Popen(
        command(out),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if tf.train.latest_checkpoint(str(out / "checkpoints" / "meta")):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "rates.json").exists(), (
        "killed too late: meta-training had finished"
    )
    resumed = subprocess.run(
        command(out), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at meta step" in resumed.stderr

    assert json.loads((out / "results.json").read_text())["resumed"] is True
    assert json.loads((uninterrupted / "results.json").read_text())["resumed"] is False
    expected = json.loads((uninterrupted / "rates.json").read_text())["phi"]
    assert json.loads((out / "rates.json").read_text())["phi"] == expected
    results = [
        json.loads((d / "results.json").read_text()) for d in (out, uninterrupted)
    ]
    assert results[0]["correct"] == results[1]["correct"]
    # The weights: equal up to round-off far below one Adam step (about
    # lr x λ, 3e-6 or more here, so a wrong batch, mask or moment fails).
    # Under heavy load the uninterrupted run once came out 1-128 ulps off in
    # 251 of 27,747 weights, with the same φ and predictions (2026-12-07; seven
    # other processes, the resumed one among them, agreed bit for bit):
    # TensorFlow's CPU kernels are not always bit-reproducible on a busy machine.
    for a, b in zip(_weights(out / "model"), _weights(uninterrupted / "model")):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_meta_english_init_exp_rates_exact_gradient_end_to_end(workspace, meta_run):
    # The issue-11 options together, with rounds from the English model (the
    # reading other than the default, as in the row meta-exp-exact-100):
    # λ = exp(φ) from φ = 0, the exact meta-gradient with state checkpointing;
    # stage 3 then trains with rates that may exceed 1. The layers are
    # recomputed in the HVPs (the same values to round-off: test_exact_meta_gradient).
    root, data_dir, preset = workspace
    out = root / "meta-exp-exact"
    extra = ["--init-from", str(meta_run[0]), "--meta-init", "english"]
    extra += ["--rates-param", "exp", "--initial-phi", "0"]
    extra += ["--meta-gradient", "exact", "--state-every", "2", "--meta-lr", "0.5"]
    result = meta.main(
        _common(data_dir, preset, out, *META, *extra, "--recompute-layers")
    )
    assert result["method"] == "meta-english-init-exp-exact"
    assert json.loads((out / "run.json").read_text())["args"]["recompute_layers"]
    payload = json.loads((out / "rates.json").read_text())
    assert payload["rates_param"] == "exp"
    stats = json.loads((out / "meta_stats.json").read_text())
    assert stats["phi_updates"] == 4
    assert stats["phi_start"] == {g: 0.0 for g in payload["rates"]}
    assert 0.0 <= stats["share_steps_down"] <= 1.0
    # 4 Adam steps of lr 0.5 from φ = 0 (the first moves every φ by ~0.5).
    assert 0.4 < stats["displacement_max"] <= 2.0 + 1e-6
    assert stats["mean_rate"] == pytest.approx(np.mean(list(payload["rates"].values())))
    phi = [stats["phi_end"][g] for g in payload["rates"]]
    assert list(payload["rates"].values()) == pytest.approx(np.exp(phi), rel=1e-6)
    norms = {
        **_tensors(out, "meta/max_adjoint_norm"),
        **_tensors(out, "meta/gradient_norm"),
    }
    assert [s for s, _ in norms["meta/max_adjoint_norm"]] == [1, 2, 3, 4]
    assert all(v > 0 for _, v in norms["meta/gradient_norm"])

    from tools.plot_rates import plot_rates, rates_param

    # The heat map's scale follows the run's λ(φ): exp reaches 4, not 1.
    assert (rates_param(out), rates_param(meta_run[0])) == ("exp", "sigmoid")
    assert plot_rates(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same run with its stored states in files, every one kept (k = 1),
    # and its Hessian-vector products over two micro-batches: the same rates
    # to round-off (in memory, k = 2 recomputed half of them), no file left.
    offloaded = root / "meta-exp-exact-offloaded"
    extra[extra.index("--state-every") + 1] = "1"
    meta.main(
        _common(data_dir, preset, offloaded, *META, *extra, "--recompute-layers")
        + ["--offload-states", "--hvp-micro-batches", "2"]
    )
    again = json.loads((offloaded / "rates.json").read_text())["rates"]
    assert again == pytest.approx(payload["rates"], rel=1e-6)
    assert list((offloaded / "exact-states").iterdir()) == []
    assert (
        json.loads((offloaded / "run.json").read_text())["args"]["hvp_micro_batches"]
        == 2
    )


def test_fresh_head_redraws_only_the_classifier_layers(workspace):
    _, _, preset = workspace
    classifier = keras_hub.models.TextClassifier.from_preset(
        str(preset), num_classes=3, activation=None
    )
    before = {v.path: v.numpy().copy() for v in classifier.weights}
    fresh_head(classifier, seed=7)
    first = {v.path: v.numpy().copy() for v in classifier.weights}
    fresh_head(classifier, seed=7)
    again = {v.path: v.numpy().copy() for v in classifier.weights}
    fresh_head(classifier, seed=8)
    other = {v.path: v.numpy().copy() for v in classifier.weights}
    for path, value in before.items():
        np.testing.assert_array_equal(first[path], again[path])  # seeded
        if path.startswith("logits/kernel"):
            assert np.abs(first[path] - value).max() > 0
            assert np.abs(other[path] - first[path]).max() > 0
        elif not path.startswith("logits/"):
            np.testing.assert_array_equal(first[path], value)  # backbone kept


def test_paired_t_p_matches_closed_forms_and_tables():
    from trainers.reporting import paired_t_p

    def t_of(d):
        d = np.asarray(d, float)
        return d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))

    two, three = [1.0, 3.0], [0.167, -0.027, 0.194]
    # 1 degree of freedom (Cauchy) and 2 have closed forms
    assert paired_t_p(two) == pytest.approx(1 - 2 * np.arctan(t_of(two)) / np.pi)
    assert paired_t_p(three) == pytest.approx(
        1 - t_of(three) / np.sqrt(2 + t_of(three) ** 2)
    )
    # the 5 % and 1 % two-sided critical values of Student's t tables
    for df, critical, p in ((4, 2.7764, 0.05), (10, 2.2281, 0.05), (5, 4.0321, 0.01)):
        spread = [-1, 1] + [0] * (df - 1)  # df + 1 differences
        shift = critical * np.std(spread, ddof=1) / np.sqrt(df + 1)
        diffs = [shift + x for x in spread]
        assert t_of(diffs) == pytest.approx(critical)
        assert paired_t_p(diffs) == pytest.approx(p, abs=2e-5)
    assert paired_t_p([-0.4, 0.4]) == 1.0
    assert paired_t_p([0.0, 0.0]) == 1.0 and paired_t_p([0.3, 0.3]) == 0.0
    assert np.isnan(paired_t_p([0.5]))
