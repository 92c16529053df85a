"""gRPC server: round trip, bad requests, concurrency, hot swap, TLS, labels."""

import shutil
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.client.nli_client import NliClient
from tests.serving.conftest import PAIRS, wait_until

# Every test talks to a real server on an exported model.
pytestmark = pytest.mark.slow

PREMISES = [p for p, _ in PAIRS]
HYPOTHESES = [h for _, h in PAIRS]
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def strings(values):
    return tf.make_tensor_proto(np.array(values, dtype=object))


def predict_request(premises=("a cat",), hypotheses=("a dog",), **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", "nli")
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if premises is not None:
        request.inputs["premise"].CopyFrom(
            strings([p.encode() if isinstance(p, str) else p for p in premises])
        )
    if hypotheses is not None:
        request.inputs["hypothesis"].CopyFrom(
            strings([h.encode() if isinstance(h, str) else h for h in hypotheses])
        )
    return request


def classify_request(features=None, signature="classify", name="nli"):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for feats in (
        features if features is not None else [{"premise": b"a", "hypothesis": b"b"}]
    ):
        example = request.input.example_list.examples.add()
        for key, value in feats.items():
            example.features.feature[key].bytes_list.value.append(value)
    return request


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.address)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


def test_round_trip_matches_in_process(server, reference):
    with NliClient(server.address) as client:
        labels, probs = client.predict(PREMISES, HYPOTHESES)
        spec = client.last_model_spec
    assert probs.dtype == np.float32 and probs.shape == (len(PAIRS), 3)
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-5, rtol=0)
    names = np.array(["entailment", "neutral", "contradiction"])
    assert labels == names[reference["probabilities"].argmax(axis=1)].tolist()
    assert (spec.name, spec.version.value, spec.signature_name) == (
        "nli",
        1,
        "serving_default",
    )


def test_length_aware_batches_match_full_padding(stubs, reference):
    """serving_default runs each batch at its longest pair's length; the outputs
    equal the in-memory model's on pairs padded to sequence_length."""
    predict, _ = stubs
    for i in range(len(PAIRS)):  # each pair alone: trimmed to its own length
        response = predict.Predict(
            predict_request([PREMISES[i]], [HYPOTHESES[i]]), timeout=30
        )
        np.testing.assert_allclose(
            tf.make_ndarray(response.outputs["probabilities"])[0],
            reference["probabilities"][i],
            atol=1e-5,
            rtol=0,
        )
    response = predict.Predict(predict_request([], []), timeout=30)
    assert tf.make_ndarray(response.outputs["probabilities"]).shape == (0, 3)


def test_predict_output_filter_and_float_encoding(stubs):
    predict, _ = stubs
    request = predict_request(PREMISES[:2], HYPOTHESES[:2])
    request.output_filter.append("probabilities")
    response = predict.Predict(request, timeout=30)
    assert list(response.outputs) == ["probabilities"]
    tensor = response.outputs["probabilities"]
    assert tensor.tensor_content and not tensor.float_val  # floats in tensor_content
    assert tf.make_ndarray(tensor).shape == (2, 3)
    full = predict.Predict(predict_request(PREMISES[:2], HYPOTHESES[:2]), timeout=30)
    assert sorted(full.outputs) == ["label", "label_name", "probabilities"]
    assert full.outputs["label"].dtype == tf.int32.as_datatype_enum
    np.testing.assert_array_equal(
        tf.make_ndarray(full.outputs["label"]),
        tf.make_ndarray(tensor).argmax(axis=1),
    )


def test_token_id_signature_and_classify_agree(stubs, reference):
    predict, _ = stubs
    pre = reference["classifier"].preprocessor
    x = pre(x=(PREMISES, HYPOTHESES))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "nli"
    request.model_spec.signature_name = "predict_token_ids"
    for key in ("token_ids", "segment_ids", "padding_mask"):
        request.inputs[key].CopyFrom(
            tf.make_tensor_proto(np.asarray(x[key]).astype(np.int32))
        )
    response = predict.Predict(request, timeout=30)
    probs = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-5, rtol=0)

    features = [{"premise": p.encode(), "hypothesis": h.encode()} for p, h in PAIRS]
    result = predict.Classify(classify_request(features), timeout=30)
    assert result.model_spec.signature_name == "classify"
    got = np.array(
        [[c.score for c in r.classes] for r in result.result.classifications]
    )
    np.testing.assert_allclose(got, reference["probabilities"], atol=1e-5, rtol=0)
    labels = [c.label for c in result.result.classifications[0].classes]
    assert labels == ["entailment", "neutral", "contradiction"]


def test_model_metadata_and_status(stubs):
    predict, models = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "nli"
    request.metadata_field.append("signature_def")
    response = predict.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert {"serving_default", "predict_token_ids", "classify"} <= set(
        signature_map.signature_def
    )
    default = signature_map.signature_def["serving_default"]
    assert default.inputs["premise"].dtype == tf.string.as_datatype_enum

    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nli"}),
        timeout=30,
    )
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]


def _set(request, key, proto):
    request.inputs[key].CopyFrom(proto)
    return request


def _with_output_filter(request, name):
    request.output_filter.append(name)
    return request


def _token_ids(values, length=32):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "nli"
    request.model_spec.signature_name = "predict_token_ids"
    ids = np.zeros((1, length), np.int32)
    ids[0, 0] = values
    for key in ("token_ids", "segment_ids", "padding_mask"):
        request.inputs[key].CopyFrom(
            tf.make_tensor_proto(
                ids if key == "token_ids" else np.ones((1, length), np.int32)
            )
        )
    return request


def _reshaped(request, key, dims):
    shape = request.inputs[key].tensor_shape
    del shape.dim[:]
    for size in dims:
        shape.dim.add().size = size
    return request


def _unknown_rank(request):
    request.inputs["premise"].tensor_shape.unknown_rank = True
    return request


def _truncated(request, key):
    tensor = request.inputs[key]
    tensor.tensor_content = tensor.tensor_content[:-1]
    return request


def _malformed():
    request = predict_request(("a", "b", "c"), ("d", "e"))
    request.inputs["premise"].tensor_shape.dim[0].size = 2  # shape [2], 3 values
    return request


PREDICT_ERRORS = [
    (
        "unknown model",
        lambda: predict_request(name="nope"),
        NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    ),
    (
        "unknown version",
        lambda: predict_request(version=7),
        NOT_FOUND,
        "Servable not found for request: Specific(nli, 7); loaded versions: 1",
    ),
    (
        "unknown label",
        lambda: predict_request(version_label="canary"),
        INVALID,
        "Unrecognized servable version label: canary (model 'nli' has labels: none)",
    ),
    (
        "unknown signature",
        lambda: predict_request(signature_name="nope"),
        PRECONDITION,
        "Serving signature key \"nope\" not found. (model 'nli' version 1 has: "
        "classify, predict_token_ids, serving_default)",
    ),
    (
        "missing input",
        lambda: predict_request(hypotheses=None),
        INVALID,
        "missing input(s) hypothesis: signature 'serving_default' takes exactly "
        "hypothesis, premise",
    ),
    (
        "extra input",
        lambda: _set(predict_request(), "label", strings([b"x"])),
        INVALID,
        "unexpected input(s) label",
    ),
    (
        "wrong dtype",
        lambda: _set(predict_request(), "premise", tf.make_tensor_proto([1.5])),
        INVALID,
        "input 'premise' has dtype DT_FLOAT; signature 'serving_default' "
        "expects DT_STRING",
    ),
    (
        "wrong rank",
        lambda: _set(predict_request(), "premise", strings([[b"a"]])),
        INVALID,
        "input 'premise' has shape [1, 1]; signature 'serving_default' expects [-1]",
    ),
    (
        "batch mismatch",
        lambda: predict_request(("a", "b"), ("c",)),
        INVALID,
        "inputs have different batch sizes: hypothesis=1, premise=2",
    ),
    (
        "non-UTF-8",
        lambda: predict_request(("ok",), (b"a\xffb",)),
        INVALID,
        "input 'hypothesis'[0] is not valid UTF-8 (byte 0xff at offset 1)",
    ),
    (
        "over-long string",
        lambda: predict_request(("x" * 10_001,), ("y",)),
        INVALID,
        "input 'premise'[0] is 10001 bytes long; the limit is 10000 bytes",
    ),
    (
        "batch over limit",
        lambda: predict_request(("a",) * 257, ("b",) * 257),
        INVALID,
        "has batch size 257, over the limit of 256",
    ),
    (
        "more values than the shape holds",
        _malformed,
        INVALID,
        "tensor parsing error: premise: shape [2] needs 2 value(s) but the tensor "
        "holds 3",
    ),
    (
        "negative dimension",
        lambda: _reshaped(predict_request(), "premise", [-1]),
        INVALID,
        "tensor parsing error: premise: shape [-1] has a negative dimension; every "
        "dimension must be >= 0",
    ),
    (
        "negative inner dimension",
        lambda: _reshaped(_token_ids(5), "token_ids", [-1, -32]),
        INVALID,
        "tensor parsing error: token_ids: shape [-1, -32] has a negative dimension",
    ),
    (
        "unknown rank",
        lambda: _unknown_rank(predict_request()),
        INVALID,
        "tensor parsing error: premise: the shape has an unknown rank",
    ),
    (
        "tensor_content too short",
        lambda: _reshaped(_token_ids(5), "segment_ids", [2, 32]),
        INVALID,
        "tensor parsing error: segment_ids: shape [2, 32] needs 64 value(s) but "
        "the tensor holds 32",
    ),
    (
        "tensor_content not whole values",
        lambda: _truncated(_token_ids(5), "padding_mask"),
        INVALID,
        "tensor parsing error: padding_mask: tensor_content holds 127 bytes, not a "
        "whole number of 4-byte values",
    ),
    (
        "unknown output",
        lambda: _with_output_filter(predict_request(), "logits"),
        INVALID,
        "output_filter names unknown output(s) logits",
    ),
    (
        "token id out of range",
        lambda: _token_ids(5000),
        INVALID,
        "input 'token_ids' values must be in [0, ",
    ),
    (
        "token ids too short",
        lambda: _token_ids(5, length=8),
        INVALID,
        "input 'padding_mask' has shape [1, 8]; signature 'predict_token_ids' "
        "expects [-1, 32]",
    ),
]


@pytest.mark.parametrize(
    "build,code,message",
    [c[1:] for c in PREDICT_ERRORS],
    ids=[c[0] for c in PREDICT_ERRORS],
)
def test_bad_predict_requests(stubs, build, code, message):
    predict, _ = stubs
    with pytest.raises(grpc.RpcError) as info:
        predict.Predict(build(), timeout=30)
    assert info.value.code() == code
    assert message in info.value.details()


CLASSIFY_ERRORS = [
    (
        "missing feature",
        lambda: classify_request([{"premise": b"a"}]),
        INVALID,
        "example 0: missing feature 'hypothesis'",
    ),
    (
        "non-UTF-8 feature",
        lambda: classify_request([{"premise": b"\xc3", "hypothesis": b"b"}]),
        INVALID,
        "input 'example 0.premise'[0] is not valid UTF-8",
    ),
    ("no examples", lambda: classify_request([]), INVALID, "input holds no examples"),
    (
        "unknown signature",
        lambda: classify_request(signature="nope"),
        INVALID,
        "No signature was found with the name: nope",
    ),
    (
        "predict signature",
        lambda: classify_request(signature=""),
        INVALID,
        "signature 'serving_default' is not a classification signature",
    ),
    (
        "unknown model",
        lambda: classify_request(name="nope"),
        NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    ),
]


@pytest.mark.parametrize(
    "build,code,message",
    [c[1:] for c in CLASSIFY_ERRORS],
    ids=[c[0] for c in CLASSIFY_ERRORS],
)
def test_bad_classify_requests(stubs, build, code, message):
    predict, _ = stubs
    with pytest.raises(grpc.RpcError) as info:
        predict.Classify(build(), timeout=30)
    assert info.value.code() == code
    assert message in info.value.details()


def test_bad_metadata_and_status_requests(stubs):
    predict, models = stubs
    cases = [
        (
            predict.GetModelMetadata,
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "nli"}),
            INVALID,
            "at least one metadata_field",
        ),
        (
            predict.GetModelMetadata,
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec={"name": "nli"}, metadata_field=["stats"]
            ),
            INVALID,
            "metadata field 'stats' is not supported",
        ),
        (
            predict.GetModelMetadata,
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec={"name": "x"}, metadata_field=["signature_def"]
            ),
            NOT_FOUND,
            "Latest(x)",
        ),
        (
            models.GetModelStatus,
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "x"}),
            NOT_FOUND,
            "Latest(x)",
        ),
        (
            models.GetModelStatus,
            get_model_status_pb2.GetModelStatusRequest(
                model_spec={"name": "nli", "version": {"value": 9}}
            ),
            NOT_FOUND,
            "Could not find version 9 of model 'nli'",
        ),
    ]
    for method, request, code, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            method(request, timeout=30)
        assert (info.value.code(), message in info.value.details()) == (code, True), (
            message
        )
    # ...and the server still answers good requests.
    assert predict.Predict(predict_request(), timeout=30).model_spec.version.value == 1


@pytest.mark.parametrize(
    "method",
    [
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/Classify",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "/tensorflow.serving.ModelService/GetModelStatus",
    ],
)
def test_unparseable_request_is_invalid_argument_without_traceback(
    server, stubs, method, caplog
):
    channel = grpc.insecure_channel(server.address)
    call = channel.unary_unary(method)  # no serializers: raw bytes
    caplog.set_level("DEBUG")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff not a protobuf", timeout=30)
    channel.close()
    assert info.value.code() == INVALID
    assert info.value.details().startswith("the request body is not a serialized ")
    assert [r for r in caplog.records if r.exc_info or r.levelno >= 30] == []
    predict, _ = stubs
    assert predict.Predict(predict_request(), timeout=30).model_spec.version.value == 1


def test_metadata_request_limits(stubs):
    from google.protobuf import struct_pb2

    predict, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "nli"}, metadata_field=["request_limits"]
    )
    response = predict.GetModelMetadata(request, timeout=30)
    assert list(response.metadata) == ["request_limits"]
    limits = struct_pb2.Struct()
    assert response.metadata["request_limits"].Unpack(limits)
    assert dict(limits) == {
        "max_request_batch_size": 256.0,
        "max_string_bytes": 10000.0,
    }


def _hammer(address, clients, requests, expected, errors, versions, stop=None):
    """``clients`` threads each sending ``requests`` single pairs (or until stop)."""

    def worker(worker_id):
        with NliClient(address, timeout=30) as client:
            sent = 0
            while sent < requests and not (stop is not None and stop.is_set()):
                i = (worker_id + sent) % len(PAIRS)
                try:
                    _, probs = client.predict([PREMISES[i]], [HYPOTHESES[i]])
                    if not np.allclose(probs[0], expected[i], atol=1e-5, rtol=0):
                        errors.append(f"wrong probabilities for pair {i}: {probs[0]}")
                    versions.append(client.last_model_spec.version.value)
                except grpc.RpcError as err:
                    errors.append(f"{err.code().name}: {err.details()}")
                sent += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def test_eight_concurrent_clients_batched(server, reference):
    servable = server.manager.resolve(predict_request().model_spec)
    errors, versions = [], []
    started = time.monotonic()
    threads = _hammer(
        server.address, 8, 200, reference["probabilities"], errors, versions
    )
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    assert errors == []
    assert len(versions) == 1600
    batcher = servable._batchers["serving_default"]
    assert (
        batcher.rows >= 1600 and batcher.batches < batcher.rows
    )  # requests were merged
    print(
        f"1600 requests in {elapsed:.1f}s, "
        f"{batcher.rows / batcher.batches:.2f} rows per batch"
    )


def test_new_version_is_picked_up_without_failed_requests(
    model_base, reference, tmp_path
):
    from serving.server.batching_config import BatchingConfig
    from serving.server.model_manager import ModelManager
    from serving.server.model_server import ModelServer

    base = tmp_path / "nli"
    shutil.copytree(model_base / "1", base / "1")
    manager = ModelManager.for_model(
        "nli",
        base,
        batching=BatchingConfig(enabled=True, max_batch_size=8),
        poll_seconds=0.2,
        retry_seconds=60,
    )
    srv = ModelServer(manager, port=0)
    address = f"127.0.0.1:{srv.start()}"
    status = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(address))
    errors, versions, stop = [], [], threading.Event()
    try:
        threads = _hammer(
            address, 4, 10**9, reference["probabilities"], errors, versions, stop
        )
        wait_until(lambda: len(versions) > 20, 60, "requests on version 1")
        # A broken version is never served and does not disturb version 1.
        (base / "5").mkdir()
        (base / "5" / "saved_model.pb").write_bytes(b"not a SavedModel")
        states = get_model_status_pb2.ModelVersionStatus

        def state_of(version):
            reply = status.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nli"})
            )
            return {s.version: s for s in reply.model_version_status}.get(version)

        failed = wait_until(
            lambda: (s := state_of(5)) is not None and s.state == states.END and s,
            60,
            "version 5 to fail",
        )
        assert failed.status.error_message
        shutil.rmtree(base / "5")
        # Drop version 2 the way the exporter does: write aside, rename into place.
        shutil.copytree(model_base / "1", base / ".incoming")
        (base / ".incoming").rename(base / "2")
        wait_until(lambda: versions[-1] == 2 if versions else False, 60, "version 2")
        count = len(versions)
        wait_until(lambda: len(versions) > count + 20, 60, "requests on version 2")
        wait_until(lambda: state_of(1).state == states.END, 30, "version 1 to unload")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        srv.stop(grace=5)
    assert errors == []
    switch = versions.index(2)
    assert set(versions[:switch]) == {1} and set(versions[switch + 8 :]) == {2}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1/localhost (openssl CLI)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_and_version_labels(model_base, certificate, reference, tmp_path):
    from serving.server.model_manager import ModelManager
    from serving.server.model_server import ModelServer

    base = tmp_path / "nli"
    shutil.copytree(model_base / "1", base / "1")
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list { config { "
        f'name: "nli" base_path: "{base}" model_platform: "tensorflow" '
        'version_labels { key: "stable" value: 1 } } }'
    )
    cert, key = certificate
    srv = ModelServer(
        ModelManager.from_config_file(config),
        port=0,
        ssl_cert=cert,
        ssl_key=key,
        rest_port=0,
    )
    address = f"127.0.0.1:{srv.start()}"
    rest = f"127.0.0.1:{srv.bound_rest_port}"
    try:
        with NliClient(
            address, version_label="stable", root_certificates=cert.read_bytes()
        ) as c:
            _, probs = c.predict(PREMISES, HYPOTHESES)
            assert c.last_model_spec.version.value == 1
        np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-5, rtol=0)
        with (
            NliClient(address, timeout=5) as plain,
            pytest.raises(grpc.RpcError) as info,
        ):
            plain.predict(["a"], ["b"])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # The REST API is HTTPS with the same certificate.
        from serving.client.rest_client import RestNliClient

        with RestNliClient(rest, version_label="stable", ca_file=str(cert)) as c:
            _, probs = c.predict(PREMISES, HYPOTHESES)
        np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-5, rtol=0)
        with RestNliClient(rest, timeout=5) as plain, pytest.raises(OSError):
            plain.predict(["a"], ["b"])  # plain HTTP to an HTTPS port
    finally:
        srv.stop(grace=5)
