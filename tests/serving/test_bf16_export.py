"""Export with --precision mixed_bfloat16: bfloat16 layers, float32 weights and
outputs, checked against the float32 model."""

import json

import numpy as np
import pytest

from serving.export.command import main
from serving.export.export_error import ExportError
from serving.export.exporter import Exporter
from tests.serving.conftest import serve_pairs


@pytest.fixture(scope="module")
def bf16_base(run_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("bf16") / "nli"
    argv = ["--run-dir", str(run_dir), "--out", str(base / "1")]
    assert main(argv + ["--precision", "mixed_bfloat16"]) == 0
    return base


@pytest.mark.slow
def test_metadata_records_the_precision(bf16_base):
    meta = json.loads(
        (bf16_base / "1" / "assets.extra" / "keras_metaopt.json").read_text()
    )
    assert meta["inference"]["precision"] == "mixed_bfloat16"


@pytest.mark.slow
def test_the_export_computes_in_bfloat16_near_the_float32_model(bf16_base, reference):
    import tensorflow as tf

    _, out = serve_pairs(bf16_base / "1")
    probs = out["probabilities"]
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    diff = np.abs(probs - reference["probabilities"]).max()
    # Near the float32 model, but not equal to it: the layers ran in bfloat16
    # (float32 exports match it within 1e-5).
    assert 1e-4 < diff < 0.05
    assert out["label"].tolist() == reference["probabilities"].argmax(axis=1).tolist()
    # The weights are stored as they were trained: float32.
    reader = tf.train.load_checkpoint(str(bf16_base / "1" / "variables" / "variables"))
    dtypes = set(reader.get_variable_to_dtype_map().values())
    assert {d for d in dtypes if d.is_floating} == {tf.float32}


@pytest.mark.slow
def test_a_bfloat16_export_too_far_from_float32_is_refused(run_dir, tmp_path):
    exporter = Exporter(
        run_dir, tmp_path / "nli" / "1", precision="mixed_bfloat16", float32_atol=1e-6
    )
    with pytest.raises(
        ExportError,
        match=r"mixed_bfloat16: probabilities of pair \d+ .* differ from the "
        r"float32 model by .* > --float32-atol 1e-06",
    ):
        exporter.export()
    assert not (tmp_path / "nli").exists()  # nothing left behind


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--precision", "mixed_float16"], "argument --precision: invalid choice"),
        (["--float32-atol", "-1"], "--float32-atol -1.0: must be a number >= 0"),
        (["--atol", "nan"], "--atol nan: must be a number >= 0"),
    ],
)
def test_bad_precision_flags_are_one_line_errors(
    run_dir, tmp_path, capsys, flags, message
):
    argv = ["--run-dir", str(run_dir), "--out", str(tmp_path / "m" / "1"), *flags]
    if "choice" in message:  # argparse's own refusal exits
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
    else:
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
