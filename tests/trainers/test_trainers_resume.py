"""Trainers interrupted and resumed; what TensorBoard holds, read back.

A run killed (SIGKILL) in the English and then in the auxiliary stage, and the
`--meta joint` / `--rates shared` ablations crashed mid-round, must end with the
same weights and φ, bit for bit, as an uninterrupted run. The logged losses, φ
and accuracies are read back from TensorBoard and compared with what the run
computed and wrote in results.json / rates.json.
"""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import MetaStep, TrainStep, data
from tests.trainers.test_trainers import (  # noqa: F401  (workspace is a fixture)
    LANGS,
    ROOT,
    _common,
    _tensors,
    _weights,
    workspace,
)
from trainers import meta, meta_training, stage_loop

# Every test trains tiny runs end to end, some in subprocesses.
pytestmark = pytest.mark.slow

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _set(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def _finetune_args(data_dir, preset, out):
    args = _common(data_dir, preset, out)
    for flag, value in {
        "--en-steps": "12",
        "--aux-steps": "12",
        "--checkpoint-every": "1",
        "--log-every": "1",
    }.items():
        args = _set(args, flag, value)
    return [sys.executable, "-m", "trainers.finetune", *args]


@pytest.fixture(scope="module")
def finetune_reference(workspace):  # noqa: F811
    root, data_dir, preset = workspace
    out = root / "finetune-uninterrupted"
    done = subprocess.run(
        _finetune_args(data_dir, preset, out),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _kill_at_first_checkpoint(command, checkpoints, log):
    """Starts `command`, SIGKILLs it once `checkpoints` holds a checkpoint."""
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr
        )
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if tf.train.latest_checkpoint(str(checkpoints)):
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    return open(log).read()


def test_killed_in_the_english_then_the_aux_stage_ends_bit_for_bit_equal(
    workspace,  # noqa: F811
    finetune_reference,
):
    root, data_dir, preset = workspace
    out = root / "finetune-killed"
    command = _finetune_args(data_dir, preset, out)

    _kill_at_first_checkpoint(command, out / "checkpoints" / "en", root / "k1.log")
    assert not (out / "stage1").exists(), "killed too late: stage 1 had finished"
    # Rerun: resumes the English stage, then is killed in the aux stage.
    log = _kill_at_first_checkpoint(
        command, out / "checkpoints" / "aux", root / "k2.log"
    )
    assert "en: resuming at step" in log
    assert (out / "stage1" / "task.json").is_file()
    assert not (out / "model").exists(), "killed too late: the aux stage had finished"
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "aux: resuming at step" in done.stderr
    assert "en: resumed" not in done.stderr  # stage 1 was done

    for name in ("stage1", "model"):
        for a, b in zip(_weights(out / name), _weights(finetune_reference / name)):
            np.testing.assert_array_equal(a, b, err_msg=name)
    got = json.loads((out / "results.json").read_text())
    expected = json.loads((finetune_reference / "results.json").read_text())
    assert got["correct"] == expected["correct"]
    assert got["resumed"] is True and expected["resumed"] is False


class _Crash(RuntimeError):
    pass


def _recording_meta_step(record, crash_at=None):
    """A MetaStep that records each call's result and φ, or crashes on a call."""

    class Recording(MetaStep):
        def __call__(self, *args):
            if crash_at is not None and len(record) + 1 == crash_at:
                raise _Crash(f"simulated crash before meta step {crash_at}")
            result = super().__call__(*args)
            record.append(
                {
                    "train_loss": np.float32(result["train_loss"]),
                    "heldout_loss": np.float32(result["heldout_loss"]),
                    "phi": self.optimizer.phi.numpy().astype("float32"),
                    "policy": self.model.dtype_policy.name,
                }
            )
            return result

    return Recording


def _recording_train_step(record):
    class Recording(TrainStep):
        def __call__(self, iterator):
            loss = super().__call__(iterator)
            record.append((self.steps_per_call, np.float32(loss)))
            return loss

    return Recording


ABLATIONS = {"joint": ("--meta", "joint"), "shared": ("--rates", "shared")}


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablation_resumes_mid_round_and_tensorboard_holds_what_it_computed(
    workspace,  # noqa: F811
    finetune_reference,
    ablation,
    monkeypatch,
    caplog,
):
    root, data_dir, preset = workspace
    # 2 rounds of 3 meta updates of L = 2 steps; a checkpoint after every one.
    extra = (
        "--rounds", "2", "--meta-updates-per-round", "3", "--meta-interval", "2",
        "--init-from", str(finetune_reference), *ABLATIONS[ablation],
    )  # fmt: skip

    def args(out):
        return _set(_common(data_dir, preset, out, *extra), "--checkpoint-every", "2")

    reference = root / f"{ablation}-uninterrupted"
    meta_record, aux_record = [], []
    monkeypatch.setattr(meta_training, "MetaStep", _recording_meta_step(meta_record))
    monkeypatch.setattr(stage_loop, "TrainStep", _recording_train_step(aux_record))
    results = meta.main(args(reference))
    assert len(meta_record) == 6
    # The aux stage: 4 steps, in calls of min(--log-every 3, --checkpoint-every 2).
    assert [n for n, _ in aux_record] == [2, 2]
    aux_losses = [((i + 1) * 2, float(loss)) for i, (_, loss) in enumerate(aux_record)]

    # Crash before meta step 3 (mid-round 1 of 2), then rerun to the end.
    out = root / f"{ablation}-crashed"
    monkeypatch.setattr(meta_training, "MetaStep", _recording_meta_step([], crash_at=3))
    with pytest.raises(_Crash):
        meta.main(args(out))
    monkeypatch.setattr(meta_training, "MetaStep", _recording_meta_step(resumed := []))
    with caplog.at_level("INFO", logger="keras_metaopt.trainers"):
        meta.main(args(out))
    assert "meta: resuming at meta step 2/6" in caplog.text
    assert len(resumed) == 4
    rates = json.loads((reference / "rates.json").read_text())
    assert json.loads((out / "rates.json").read_text())["phi"] == rates["phi"]
    for a, b in zip(_weights(out / "model"), _weights(reference / "model")):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(resumed, meta_record[2:]):
        np.testing.assert_array_equal(a["phi"], b["phi"])

    # What the ablation means.
    saved = json.loads((reference / "results.json").read_text())
    assert saved["method"] == f"meta-{ablation}"
    assert results["accuracy"] == saved["accuracy"]
    phi_tags = _tensors(reference, "phi/")
    held_out = [
        v
        for _, v in _tensors(reference, "meta/heldout_language")[
            "meta/heldout_language"
        ]
    ]
    if ablation == "shared":
        assert len(set(rates["phi"].values())) == 1
        assert list(phi_tags) == ["phi/shared"]
        assert set(held_out) <= {0.0, 1.0, 2.0}
    else:
        assert len(set(rates["phi"].values())) == 3
        assert sorted(phi_tags) == sorted(f"phi/{g}" for g in rates["phi"])
        assert held_out == [-1.0] * 6

    # TensorBoard, read back: the values the run computed, at their steps.
    steps = list(range(1, 7))
    for key in ("train_loss", "heldout_loss"):
        assert _tensors(reference, f"meta/{key}")[f"meta/{key}"] == [
            (s, float(r[key])) for s, r in zip(steps, meta_record)
        ], key
    names = list(rates["phi"]) if ablation == "joint" else ["shared"]
    for i, name in enumerate(names):
        assert phi_tags[f"phi/{name}"] == [
            (s, float(r["phi"][i])) for s, r in zip(steps, meta_record)
        ], name
        assert phi_tags[f"phi/{name}"][-1][1] == np.float32(
            rates["phi"][list(rates["phi"])[i]]
        )
    for group, series in _tensors(reference, "rates/").items():
        i = list(rates["phi"]).index(group.split("/", 1)[1])
        phi = [r["phi"][0 if ablation == "shared" else i] for r in meta_record]
        np.testing.assert_allclose(
            [v for _, v in series], 1 / (1 + np.exp(-np.float64(phi))), rtol=1e-6
        )
    assert _tensors(reference, "aux/loss")["aux/loss"] == aux_losses
    accuracy = _tensors(reference, "accuracy/")
    assert sorted(accuracy) == [f"accuracy/{x}" for x in sorted(LANGS)]
    for lang in LANGS:
        assert accuracy[f"accuracy/{lang}"] == [
            (0, float(np.float32(saved["accuracy"][lang])))
        ], lang


def test_fast_settings_meta_run_resumes_bit_for_bit_and_keeps_them(
    workspace,  # noqa: F811
    finetune_reference,
    monkeypatch,
    capsys,
):
    """--precision mixed_bfloat16 --group-by-length: a crash mid-round resumes
    bit for bit, and a rerun without either setting is refused."""
    root, data_dir, preset = workspace
    extra = (
        "--rounds", "2", "--meta-updates-per-round", "2", "--meta-interval", "2",
        "--init-from", str(finetune_reference), "--precision", "mixed_bfloat16",
        "--group-by-length",
    )  # fmt: skip

    def args(out):
        return _set(_common(data_dir, preset, out, *extra), "--checkpoint-every", "2")

    streams = []
    make_dataset = data.make_dataset

    def recording_make_dataset(*a, **kwargs):
        streams.append(
            (kwargs.get("length_grouping"), kwargs.get("pad_to_multiple_of"))
        )
        return make_dataset(*a, **kwargs)

    monkeypatch.setattr(data, "make_dataset", recording_make_dataset)
    reference, out = root / "fast-uninterrupted", root / "fast-crashed"
    try:  # the trainers set Keras's global dtype policy
        monkeypatch.setattr(
            meta_training, "MetaStep", _recording_meta_step(record := [])
        )
        meta.main(args(reference))
        monkeypatch.setattr(
            meta_training, "MetaStep", _recording_meta_step([], crash_at=3)
        )
        with pytest.raises(_Crash):
            meta.main(args(out))
        monkeypatch.setattr(
            meta_training, "MetaStep", _recording_meta_step(resumed := [])
        )
        meta.main(args(out))
        capsys.readouterr()
        for flags in (
            _set(args(out), "--precision", "float32"),
            [a for a in args(out) if a != "--group-by-length"],
        ):
            with pytest.raises(SystemExit) as exit_info:
                meta.main(flags)
            assert exit_info.value.code == 2
    finally:
        keras.config.set_dtype_policy("float32")
    err = capsys.readouterr().err
    assert "--precision float32 (run: mixed_bfloat16)" in err
    assert "--group-by-length False (run: True)" in err
    # Every training stream (inner, held-out, stage 3) was grouped and padded
    # to a multiple of 8; only evaluation's are not.
    training = [s for s in streams if s != (None, None)]
    assert len(training) >= 5, streams
    assert all(p == 8 and set(g) == {"seed", "skip"} for g, p in training), streams
    assert len(record) == 4 and len(resumed) == 2
    assert {r["policy"] for r in record + resumed} == {"mixed_bfloat16"}
    for a, b in zip(resumed, record[2:]):
        np.testing.assert_array_equal(a["phi"], b["phi"])
    rates = json.loads((reference / "rates.json").read_text())
    assert json.loads((out / "rates.json").read_text())["phi"] == rates["phi"]
    for a, b in zip(_weights(out / "model"), _weights(reference / "model")):
        np.testing.assert_array_equal(a, b)
    stored = json.loads((out / "run.json").read_text())["args"]
    assert stored["precision"] == "mixed_bfloat16" and stored["group_by_length"]
    # The presets record the weights' dtype, so they load without a `dtype=`
    # (keras-hub cannot load one that says mixed_bfloat16).
    for name in ("model/config.json", "model/task.json"):
        assert "mixed_bfloat16" not in (out / name).read_text(), name
