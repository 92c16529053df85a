"""Export with --jit-compile: XLA encoder, bucketed shapes, and the server's XLA gate."""

import json

import numpy as np
import pytest

from serving.export.command import main
from tests.serving.conftest import PAIRS


@pytest.fixture(scope="module")
def jit_base(run_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("jit") / "nli"
    assert (
        main(["--run-dir", str(run_dir), "--out", str(base / "1"), "--jit-compile"])
        == 0
    )
    return base


def _saved(path):
    from tensorflow.core.protobuf import saved_model_pb2

    return saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())


@pytest.mark.slow
def test_metadata_records_the_inference_settings(jit_base, model_base):
    meta = json.loads(
        (jit_base / "1" / "assets.extra" / "keras_metaopt.json").read_text()
    )
    assert meta["inference"] == {
        "precision": "float32",
        "jit_compile": True,
        "length_multiple": 8,
        "batch_bucketing": "power_of_two",
    }
    plain = json.loads(
        (model_base / "1" / "assets.extra" / "keras_metaopt.json").read_text()
    )
    assert plain["inference"] == {
        "precision": "float32",
        "jit_compile": False,
        "length_multiple": 1,
        "batch_bucketing": "none",
    }


@pytest.mark.slow
def test_only_the_jit_export_holds_xla_functions(jit_base, model_base):
    from serving.server.servable import uses_xla

    assert uses_xla(_saved(jit_base / "1"))
    assert not uses_xla(_saved(model_base / "1"))


@pytest.mark.slow
@pytest.mark.parametrize("rows", [0, 1, 3, 8])
def test_jit_export_matches_keras_at_every_batch_size(jit_base, reference, rows):
    """Rows are padded to a power of two and lengths to a multiple of 8 inside;
    what comes out is the unpadded batch, equal to the Keras model."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    loaded = tf.saved_model.load(str(jit_base / "1"))
    out = loaded.signatures["serving_default"](
        premise=tf.constant([p for p, _ in PAIRS[:rows]], tf.string),
        hypothesis=tf.constant([h for _, h in PAIRS[:rows]], tf.string),
    )
    probs = out["probabilities"].numpy()
    assert probs.shape == (rows, 3)
    np.testing.assert_allclose(
        probs, reference["probabilities"][:rows], atol=1e-5, rtol=0
    )
    assert out["label"].numpy().tolist() == probs.argmax(axis=1).tolist()


@pytest.mark.slow
def test_jit_token_ids_signature_matches_keras(jit_base, reference):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    loaded = tf.saved_model.load(str(jit_base / "1"))
    premises = tf.constant([p for p, _ in PAIRS])
    hypotheses = tf.constant([h for _, h in PAIRS])
    ids = loaded.tokenize(premises, hypotheses)
    out = loaded.signatures["predict_token_ids"](**ids)
    np.testing.assert_allclose(
        out["probabilities"].numpy(), reference["probabilities"], atol=1e-5, rtol=0
    )


@pytest.mark.slow
def test_warmup_compiles_every_length_bucket(jit_base):
    """One single-row token-id request per multiple of 8 up to the packed length
    (32), after the four records every export has."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = jit_base / "1" / "assets.extra" / "tf_serving_warmup_requests"
    logs = [
        prediction_log_pb2.PredictionLog.FromString(raw)
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
    ]
    assert len(logs) == 4 + 4
    real = []
    for log in logs[3:7]:
        request = log.predict_log.request
        assert request.model_spec.signature_name == "predict_token_ids"
        mask = tf.make_ndarray(request.inputs["padding_mask"])
        assert mask.shape == (1, 32)
        real.append(int(mask.sum()))
    assert real == [8, 16, 24, 32]
    assert logs[7].WhichOneof("log_type") == "classify_log"


def test_next_power_of_two():
    import tensorflow as tf

    from serving.export.serving_module import _next_power_of_two

    values = [0, 1, 2, 3, 4, 5, 31, 32, 33, 1000]
    got = [int(_next_power_of_two(tf.constant(v))) for v in values]
    assert got == [0, 1, 2, 4, 4, 8, 32, 32, 64, 1024]


@pytest.mark.slow
def test_server_refuses_an_xla_model_unless_enabled(jit_base):
    from serving.server.servable import Servable

    with pytest.raises(ValueError) as err:
        Servable("nli", 1, jit_base / "1")
    message = str(err.value)
    assert "jit_compile=True" in message
    assert "--xla-cpu-compilation-enabled" in message
    assert "--xla_cpu_compilation_enabled=true" in message
    servable = Servable("nli", 1, jit_base / "1", xla_cpu_compilation_enabled=True)
    try:
        assert servable.warmup() == 8
    finally:
        servable.close()


def test_length_multiple_must_be_positive(run_dir, tmp_path, capsys):
    out = str(tmp_path / "m" / "1")
    assert (
        main(["--run-dir", str(run_dir), "--out", out, "--length-multiple", "0"]) == 2
    )
    assert "--length-multiple 0: must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
@pytest.mark.parametrize("enabled", [False, True])
def test_model_manager_gates_xla_models(jit_base, enabled):
    """What `serving.server --xla-cpu-compilation-enabled` switches: without
    it the version ends with the reason in GetModelStatus, with it it serves."""
    from tensorflow_serving.apis import model_pb2

    from serving.server.model_manager import ModelManager

    manager = ModelManager.for_model(
        "nli", jit_base, xla_cpu_compilation_enabled=enabled, max_load_retries=0
    )
    try:
        manager.poll()
        [(version, state, message)] = manager.statuses(model_pb2.ModelSpec(name="nli"))
        assert version == 1
        if enabled:
            assert (state, message) == ("AVAILABLE", "")
            assert manager.resolve(model_pb2.ModelSpec(name="nli")).uses_xla
        else:
            assert state == "END"
            assert "--xla-cpu-compilation-enabled" in message
    finally:
        manager.stop(timeout=10)


def test_server_flag_is_off_by_default_as_in_tf_serving():
    from serving.server.command import build_parser

    assert not build_parser().parse_args([]).xla_cpu_compilation_enabled
    args = build_parser().parse_args(["--xla-cpu-compilation-enabled"])
    assert args.xla_cpu_compilation_enabled
