"""REST API (/v1/models/...) against a real HTTP server on 127.0.0.1."""

import base64
import http.client
import json
import shutil
import threading
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.serving.conftest import PAIRS

# Every test talks to a real server on an exported model.
pytestmark = pytest.mark.slow

PREMISES = [p for p, _ in PAIRS]
HYPOTHESES = [h for _, h in PAIRS]
LABELS = ["entailment", "neutral", "contradiction"]


def call(base_url, method, path, body=None, raw=None):
    """One HTTP request; returns (status, parsed JSON body, headers)."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        data = raw if raw is not None else None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload), dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def rest(server):
    return server.rest_url


def test_row_format_predict_matches_in_process(rest, reference):
    instances = [{"premise": p, "hypothesis": h} for p, h in PAIRS]
    status, body, headers = call(
        rest, "POST", "/v1/models/nli:predict", {"instances": instances}
    )
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    predictions = body["predictions"]
    assert len(predictions) == len(PAIRS)
    assert sorted(predictions[0]) == ["label", "label_name", "probabilities"]
    probs = np.array([row["probabilities"] for row in predictions])
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-6, rtol=0)
    wanted = reference["probabilities"].argmax(axis=1)
    assert [row["label"] for row in predictions] == wanted.tolist()
    assert [row["label_name"] for row in predictions] == [LABELS[i] for i in wanted]


def test_columnar_predict_versions_and_signature(rest, reference):
    body = {"inputs": {"premise": PREMISES, "hypothesis": HYPOTHESES}}
    status, got, _ = call(rest, "POST", "/v1/models/nli/versions/1:predict", body)
    assert status == 200, got
    assert sorted(got["outputs"]) == ["label", "label_name", "probabilities"]
    np.testing.assert_allclose(
        got["outputs"]["probabilities"], reference["probabilities"], atol=1e-6, rtol=0
    )
    # Token ids through the predict_token_ids signature, row format.
    pre = reference["classifier"].preprocessor
    x = pre(x=(PREMISES, HYPOTHESES))
    keys = ("token_ids", "segment_ids", "padding_mask")
    rows = [
        {k: np.asarray(x[k])[i].astype(int).tolist() for k in keys}
        for i in range(len(PAIRS))
    ]
    status, got, _ = call(
        rest,
        "POST",
        "/V1/MODELS/nli:PREDICT",  # TF Serving matches the path case-insensitively
        {"signature_name": "predict_token_ids", "instances": rows},
    )
    assert status == 200, got
    probs = np.array([row["probabilities"] for row in got["predictions"]])
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-6, rtol=0)


def test_base64_strings_and_single_input_shortcut(rest, reference):
    b64 = {"b64": base64.b64encode(PAIRS[3][0].encode()).decode()}
    body = {"instances": [{"premise": b64, "hypothesis": PAIRS[3][1]}]}
    status, got, _ = call(rest, "POST", "/v1/models/nli:predict", body)
    assert status == 200, got
    np.testing.assert_allclose(
        got["predictions"][0]["probabilities"],
        reference["probabilities"][3],
        atol=1e-6,
        rtol=0,
    )


def test_classify(rest, reference):
    examples = [{"premise": p, "hypothesis": h} for p, h in PAIRS[:3]]
    status, got, _ = call(
        rest,
        "POST",
        "/v1/models/nli:classify",
        {"signature_name": "classify", "examples": examples},
    )
    assert status == 200, got
    assert [[label for label, _ in row] for row in got["results"]] == [LABELS] * 3
    scores = np.array([[score for _, score in row] for row in got["results"]])
    np.testing.assert_allclose(
        scores, reference["probabilities"][:3], atol=1e-6, rtol=0
    )
    # A shared context, as TF Serving's example_list_with_context.
    status, got, _ = call(
        rest,
        "POST",
        "/v1/models/nli:classify",
        {
            "signature_name": "classify",
            "context": {"premise": PAIRS[0][0]},
            "examples": [{"hypothesis": PAIRS[0][1]}],
        },
    )
    assert status == 200, got
    np.testing.assert_allclose(
        [s for _, s in got["results"][0]], reference["probabilities"][0], atol=1e-6
    )


def test_status_and_metadata(rest):
    status, got, _ = call(rest, "GET", "/v1/models/nli")
    assert status == 200
    assert got == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert call(rest, "GET", "/v1/models/nli/versions/1")[1] == got
    status, meta, _ = call(rest, "GET", "/v1/models/nli/metadata")
    assert status == 200, meta
    assert meta["model_spec"] == {"name": "nli", "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    # Every SignatureDef of the SavedModel, as TF Serving serves them.
    assert {"classify", "predict_token_ids", "serving_default"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["inputs"]["premise"]["dtype"] == "DT_STRING"
    assert default["method_name"] == "tensorflow/serving/predict"
    assert meta["metadata"]["request_limits"] == {
        "max_request_batch_size": 256,
        "max_string_bytes": 10000,
    }


ONE = {"instances": [{"premise": "a", "hypothesis": "b"}]}

REST_ERRORS = [
    # (id, method, path, JSON body or raw bytes, HTTP status, error text)
    ("unknown model", "POST", "/v1/models/nope:predict", ONE, 404,
     "Servable not found for request: Latest(nope)"),
    ("unknown version", "POST", "/v1/models/nli/versions/7:predict", ONE, 404,
     "Servable not found for request: Specific(nli, 7)"),
    ("unknown label", "POST", "/v1/models/nli/labels/canary:predict", ONE, 400,
     "Unrecognized servable version label: canary"),
    ("unknown signature", "POST", "/v1/models/nli:predict",
     {**ONE, "signature_name": "nope"}, 400, 'Serving signature key "nope" not found.'),
    ("signature not a string", "POST", "/v1/models/nli:predict",
     {**ONE, "signature_name": 100}, 400, "'signature_name' key must be a string"),
    ("not JSON", "POST", "/v1/models/nli:predict", b"{instances: [", 400,
     "JSON Parse error"),
    ("nested too deeply", "POST", "/v1/models/nli:predict",
     b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400,
     "JSON Parse error: the document is nested too deeply"),
    ("empty body", "POST", "/v1/models/nli:predict", b"", 400,
     "JSON Parse error: The document is empty"),
    ("not an object", "POST", "/v1/models/nli:predict", [1, 2], 400,
     "Is not object"),
    ("no instances", "POST", "/v1/models/nli:predict", {"rows": []}, 400,
     "Missing 'inputs' or 'instances' key"),
    ("both formats", "POST", "/v1/models/nli:predict",
     {**ONE, "inputs": {"premise": ["a"], "hypothesis": ["b"]}}, 400,
     "only one of 'inputs' or 'instances'"),
    ("empty instances", "POST", "/v1/models/nli:predict", {"instances": []}, 400,
     "No values in 'instances' array"),
    ("plain list for two inputs", "POST", "/v1/models/nli:predict",
     {"instances": ["a", "b"]}, 400, "instances is a plain list"),
    ("missing key", "POST", "/v1/models/nli:predict",
     {"instances": [{"premise": "a"}]}, 400,
     "keys ['premise'] must be equal to: hypothesis,premise"),
    ("number for a string", "POST", "/v1/models/nli:predict",
     {"instances": [{"premise": 1.5, "hypothesis": "b"}]}, 400,
     "instances[0].premise: JSON Value: 1.5 is not of expected type: string"),
    ("bad base64", "POST", "/v1/models/nli:predict",
     {"instances": [{"premise": {"b64": "%%%"}, "hypothesis": "b"}]}, 400,
     "is not valid base64"),
    ("non-UTF-8 bytes", "POST", "/v1/models/nli:predict",
     {"instances": [{"premise": {"b64": "/w=="}, "hypothesis": "b"}]}, 400,
     "input 'premise'[0] is not valid UTF-8 (byte 0xff at offset 0)"),
    ("columnar batch mismatch", "POST", "/v1/models/nli:predict",
     {"inputs": {"premise": ["a", "b"], "hypothesis": ["c"]}}, 400,
     "inputs have different batch sizes: hypothesis=1, premise=2"),
    ("ragged token ids", "POST", "/v1/models/nli:predict",
     {"signature_name": "predict_token_ids",
      "inputs": {"token_ids": [[1, 2], [3]], "segment_ids": [[0]],
                 "padding_mask": [[1]]}}, 400,
     "lists of different lengths"),
    ("float token id", "POST", "/v1/models/nli:predict",
     {"signature_name": "predict_token_ids",
      "instances": [{"token_ids": [0.5] * 32, "segment_ids": [0] * 32,
                     "padding_mask": [1] * 32}]}, 400,
     "is not of expected type: int32"),
    ("batch over limit", "POST", "/v1/models/nli:predict",
     {"instances": [{"premise": "a", "hypothesis": "b"}] * 257}, 400,
     "has batch size 257, over the limit of 256"),
    ("classify without examples", "POST", "/v1/models/nli:classify",
     {"signature_name": "classify"}, 400, "key 'examples' is expected"),
    ("classify missing feature", "POST", "/v1/models/nli:classify",
     {"signature_name": "classify", "examples": [{"premise": "a"}]}, 400,
     "example 0: missing feature 'hypothesis'"),
    ("regress", "POST", "/v1/models/nli:regress", {"examples": [{}]}, 501,
     "Regress is not served"),
    ("unknown verb", "POST", "/v1/models/nli:explode", ONE, 400,
     "Malformed request: POST /v1/models/nli:explode"),
    ("no model name", "GET", "/v1/models", None, 400,
     "Missing model name in request."),
    ("status of unknown version", "GET", "/v1/models/nli/versions/9", None, 404,
     "Could not find version 9 of model 'nli'"),
    ("metadata of unknown model", "GET", "/v1/models/nope/metadata", None, 404,
     "Servable not found for request: Latest(nope)"),
    ("wrong method", "PUT", "/v1/models/nli:predict", ONE, 400,
     "Malformed request: PUT /v1/models/nli:predict"),
    ("outside the API", "GET", "/healthz", None, 404, "no such endpoint: /healthz"),
    ("version over int64", "GET", "/v1/models/nli/versions/9223372036854775808",
     None, 400, "Failed to convert version: 9223372036854775808 to numeric."),
    ("predict version over int64", "POST",
     "/v1/models/nli/versions/99999999999999999999:predict", ONE, 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("largest int64 version", "GET", "/v1/models/nli/versions/9223372036854775807",
     None, 404, "Could not find version 9223372036854775807 of model 'nli'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "method,path,body,code,message",
    [c[1:] for c in REST_ERRORS],
    ids=[c[0] for c in REST_ERRORS],
)
def test_rest_errors(rest, method, path, body, code, message):
    raw = body if isinstance(body, bytes) else None
    status, got, headers = call(rest, method, path, None if raw else body, raw=raw)
    assert (status, list(got)) == (code, ["error"]), got
    assert message in got["error"]
    assert headers["Content-Type"] == "application/json"


def test_rest_shares_the_grpc_batcher(server, rest, reference):
    from serving.client.nli_client import NliClient

    with NliClient(server.address) as client:
        client.predict(PREMISES[:1], HYPOTHESES[:1])  # the batcher exists now
    servable = server.manager.resolve(client.request(["a"], ["b"]).model_spec)
    batcher = servable._batchers["serving_default"]
    rows_before = batcher.rows
    errors = []

    def worker(i):
        body = {"instances": [{"premise": PREMISES[i], "hypothesis": HYPOTHESES[i]}]}
        for _ in range(5):
            status, got, _ = call(rest, "POST", "/v1/models/nli:predict", body)
            probs = got.get("predictions", [{}])[0].get("probabilities")
            if status != 200 or not np.allclose(
                probs, reference["probabilities"][i], atol=1e-6, rtol=0
            ):
                errors.append((status, got))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert batcher.rows - rows_before == 40


def test_version_labels_over_rest(model_base, reference, tmp_path):
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
    srv = ModelServer(ModelManager.from_config_file(config), port=0, rest_port=0)
    srv.start()
    url = f"http://127.0.0.1:{srv.bound_rest_port}"
    try:
        body = {"inputs": {"premise": PREMISES[:2], "hypothesis": HYPOTHESES[:2]}}
        status, got, _ = call(url, "POST", "/v1/models/nli/labels/stable:predict", body)
        assert status == 200, got
        np.testing.assert_allclose(
            got["outputs"]["probabilities"],
            reference["probabilities"][:2],
            atol=1e-6,
            rtol=0,
        )
        status, got, _ = call(url, "GET", "/v1/models/nli/labels/stable/metadata")
        assert (status, got["model_spec"]["version"]) == (200, "1")
        status, got, _ = call(url, "GET", "/v1/models/nli/labels/stable")
        assert status == 200
        assert [s["version"] for s in got["model_version_status"]] == ["1"]
        status, got, _ = call(url, "GET", "/v1/models/nli/labels/beta")
        assert (status, got["error"]) == (
            400,
            "Unrecognized servable version label: beta (model 'nli' has labels: "
            "stable)",
        )
    finally:
        srv.stop(grace=5)


def test_body_over_the_limit_is_413(server):
    from serving.server.rest_api import RestApi
    from serving.server.rest_server import RestServer

    app = RestApi(server.predictions, _models(server), max_body_bytes=100)
    rest = RestServer(app, port=0)
    url = f"http://127.0.0.1:{rest.start()}"
    try:
        body = {"instances": [{"premise": "x" * 200, "hypothesis": "y"}]}
        status, got, _ = call(url, "POST", "/v1/models/nli:predict", body)
        assert (status, got) == (
            413,
            {
                "error": "the request body is over the limit of 100 bytes; send "
                "fewer rows per request"
            },
        )
        assert call(url, "GET", "/v1/models/nli")[0] == 200  # no body: fine
        # Chunked (no Content-Length): refused the same way, not cut to the limit
        # and parsed; a chunked body within the limit is read whole.
        for size, expected in ((200, 413), (40, 200)):
            document = {"instances": [{"premise": "x" * size, "hypothesis": "y"}]}
            data = json.dumps(document).encode()
            connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port)
            connection.request(
                "POST", "/v1/models/nli:predict",
                body=(data[i : i + 30] for i in range(0, len(data), 30)),
                encode_chunked=True,
            )  # fmt: skip
            response = connection.getresponse()
            got = json.loads(response.read())
            connection.close()
            assert response.status == expected, (size, got)
            if expected == 413:
                assert got["error"].startswith("the request body is over the limit")
    finally:
        assert rest.stop(grace=5)


def _models(server):
    from serving.server.model_servicer import ModelServicer

    return ModelServicer(server.manager)
