"""Export: layout, signatures, metadata, warmup file, the built-in check."""

import json

import numpy as np
import pytest

from serving.export.command import main
from serving.export.export_error import ExportError
from serving.export.exporter import Exporter, parse_version_dir
from tests.serving.conftest import serve_pairs


def test_version_dir_must_be_an_integer(run_dir, tmp_path, capsys):
    assert main(["--run-dir", str(run_dir), "--out", str(tmp_path / "latest")]) == 2
    err = capsys.readouterr().err
    assert "the version directory must be an integer" in err
    assert "got 'latest' in --out" in err
    with pytest.raises(ValueError, match="must be an integer"):
        parse_version_dir(tmp_path / "1a")
    assert parse_version_dir(tmp_path / "12") == (tmp_path, 12)


@pytest.mark.slow
def test_existing_version_is_refused(run_dir, model_base, capsys):
    assert main(["--run-dir", str(run_dir), "--out", str(model_base / "1")]) == 2
    assert "already exists; versions are immutable" in capsys.readouterr().err


def test_missing_run_json_is_reported(tmp_path, run_dir, capsys):
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "run.json").unlink()
    assert main(["--run-dir", str(broken), "--out", str(tmp_path / "m" / "1")]) == 2
    assert "run.json is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_layout_and_metadata(model_base, run_dir):
    version = model_base / "1"
    assert sorted(p.name for p in model_base.iterdir()) == ["1"]  # no temp dirs
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index"):
        assert (version / name).is_file()
    meta = json.loads((version / "assets.extra" / "keras_metaopt.json").read_text())
    rates = json.loads((run_dir / "rates.json").read_text())["rates"]
    assert meta["labels"] == ["entailment", "neutral", "contradiction"]
    assert meta["preset"] == "random-bert-2x16"
    assert meta["train_languages"] == ["en", "el", "ur"]
    assert meta["rates"] == rates and meta["rates_mode"] == "layerwise"
    assert meta["rates"]["transformer_layer_1"] == pytest.approx(0.45)
    assert meta["sequence_length"] == 32
    assert meta["encoder"]["backbone_class"] == "BertBackbone"
    assert meta["encoder"]["token_id_inputs"] == [
        "token_ids",
        "segment_ids",
        "padding_mask",
    ]


@pytest.mark.slow
def test_the_server_reads_what_the_export_wrote(model_base):
    from keras_metaopt.formats import LABEL_NAMES
    from serving.server.servable import Servable

    servable = Servable("nli", 1, model_base / "1")
    try:
        assert tuple(servable.metadata["labels"]) == LABEL_NAMES
        assert sorted(servable.input_limits) == [
            "padding_mask",
            "segment_ids",
            "token_ids",
        ]
        assert servable.input_limits["padding_mask"] == 2
        assert servable.warmup() == 4
    finally:
        servable.close()


@pytest.mark.slow
def test_signatures(model_base):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString(
        (model_base / "1" / "saved_model.pb").read_bytes()
    )
    sigs = saved.meta_graphs[0].signature_def
    assert sigs["serving_default"].method_name == "tensorflow/serving/predict"
    assert sigs["classify"].method_name == "tensorflow/serving/classify"
    default = sigs["serving_default"]
    assert sorted(default.inputs) == ["hypothesis", "premise"]
    assert [d.size for d in default.inputs["premise"].tensor_shape.dim] == [-1]
    assert sorted(default.outputs) == ["label", "label_name", "probabilities"]
    assert default.outputs["probabilities"].dtype == 1  # DT_FLOAT
    assert [d.size for d in default.outputs["probabilities"].tensor_shape.dim] == [
        -1,
        3,
    ]
    ids = sigs["predict_token_ids"]
    assert sorted(ids.inputs) == ["padding_mask", "segment_ids", "token_ids"]
    assert [d.size for d in ids.inputs["token_ids"].tensor_shape.dim] == [-1, 32]
    assert sorted(sigs["classify"].inputs) == ["inputs"]
    assert sorted(sigs["classify"].outputs) == ["classes", "scores"]


@pytest.mark.slow
def test_reloaded_model_matches_keras(model_base, reference):
    loaded, out = serve_pairs(model_base / "1")
    probs = out["probabilities"]
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-5, rtol=0)
    assert len(set(out["label"].tolist())) > 1  # the fixture is not constant
    meta = json.loads(loaded.metadata_json.numpy())
    assert meta["labels"] == ["entailment", "neutral", "contradiction"]


@pytest.mark.slow
def test_warmup_file_parses_as_prediction_logs(model_base):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = model_base / "1" / "assets.extra" / "tf_serving_warmup_requests"
    logs = [
        prediction_log_pb2.PredictionLog.FromString(raw)
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
    ]
    kinds = [
        (log.WhichOneof("log_type"), log.predict_log.request.model_spec.signature_name)
        for log in logs
    ]
    assert kinds == [
        ("predict_log", "serving_default"),
        ("predict_log", "serving_default"),
        ("predict_log", "predict_token_ids"),
        ("classify_log", ""),
    ]
    assert logs[3].classify_log.request.model_spec.signature_name == "classify"
    batch = logs[1].predict_log.request.inputs["premise"]
    assert [d.size for d in batch.tensor_shape.dim] == [4]


@pytest.mark.slow
def test_export_check_fails_loudly_on_a_mismatch(run_dir, model_base):
    from serving.export.run_dir import RunDir

    classifier = RunDir(run_dir).load_classifier()
    bias = classifier.get_layer("logits").bias
    bias.assign(bias.numpy() + np.array([0.01, 0.0, 0.0], dtype="float32"))
    meta = json.loads(
        (model_base / "1" / "assets.extra" / "keras_metaopt.json").read_text()
    )
    exporter = Exporter(run_dir, model_base.parent / "unused" / "1")
    with pytest.raises(
        ExportError, match=r"differ from the in-memory model by .* > atol 1e-05"
    ):
        exporter.verify(model_base / "1", classifier, meta)


@pytest.mark.slow
def test_sentencepiece_encoder_without_segment_ids(tmp_path):
    """XLM-R style: SentencePiece in the graph, <s> A </s></s> B </s>, no segments.

    The export check itself proves the in-graph tokens equal the in-memory ones.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    from keras_metaopt.testing import RandomRunDir
    from serving.export.run_dir import RunDir

    run = RandomRunDir(encoder="xlmr").write(tmp_path / "run")
    assert main(["--run-dir", str(run), "--out", str(tmp_path / "m" / "3")]) == 0
    saved = saved_model_pb2.SavedModel.FromString(
        (tmp_path / "m" / "3" / "saved_model.pb").read_bytes()
    )
    sigs = saved.meta_graphs[0].signature_def
    assert sorted(sigs["predict_token_ids"].inputs) == ["padding_mask", "token_ids"]
    meta = json.loads(
        (tmp_path / "m" / "3" / "assets.extra" / "keras_metaopt.json").read_text()
    )
    assert meta["encoder"]["tokenizer_class"] == "XLMRobertaTokenizer"
    pre = RunDir(run).load_classifier().preprocessor
    tokens = np.asarray(pre(x=(["a cat"], ["a dog"]))["token_ids"])[0].tolist()
    tokenizer = pre.tokenizer
    start, end = tokenizer.start_token_id, tokenizer.end_token_id
    assert tokens[0] == start and tokens.count(end) == 3
    first_end = tokens.index(end)
    assert tokens[first_end + 1] == end  # </s></s> between the segments
