"""`python -m serving.server` and `python -m serving.client` as a user runs
them (test_rest.py and test_cli.py cover the same on an in-process server):
TF Serving's REST edge cases (a version too large for int64 is 400, a chunked
body over the limit is 413), the client's flags, and no traceback in the
server's log."""

import http.client
import inspect
import json
import signal

import pytest

from serving.server.model_server import ModelServer
from tests.serving.conftest import run_module, start_server

# The server is a process of its own.
pytestmark = pytest.mark.slow


def _request(port, method, path, body=None, chunked=False):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if chunked:
            data, step = body, 1 << 20
            body = (data[i : i + step] for i in range(0, len(data), step))
        connection.request(method, path, body=body, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _client_flags(address, rest_url):
    pair = ["--premise", "A man plays.", "--hypothesis", "A man sleeps."]
    # --signature-name classify: one line on what is wrong with it, nothing
    # about output filters the user never set, nothing on stdout.
    for protocol in (["--server", address], ["--rest", "--server", rest_url]):
        done = run_module("serving.client", *pair, "--signature-name", "classify",
                          *protocol)  # fmt: skip
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr.splitlines() == [
            "serving.client: error: --signature-name classify: this signature has "
            "no inputs premise, hypothesis and no outputs probabilities, label_name, "
            "which the client sends and reads; use --signature-name serving_default"
        ]
    # http://HOST:PORT with --rest, as the server writes its own URL
    done = run_module("serving.client", *pair, "--rest", "--server", rest_url)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    header, row = done.stdout.splitlines()
    assert header == "label\tp_entailment\tp_neutral\tp_contradiction"
    label, *probabilities = row.split("\t")
    assert label in ("entailment", "neutral", "contradiction")
    assert sum(float(x) for x in probabilities) == pytest.approx(1.0, abs=1e-3)


def test_the_server_and_client_commands(model_base, tmp_path):
    log = tmp_path / "server.log"
    proc, address, rest_port = start_server(model_base, log)
    try:
        _client_flags(address, f"http://127.0.0.1:{rest_port}")
        path = "/v1/models/nli/versions/9223372036854775808"
        assert _request(rest_port, "GET", path) == (
            400,
            {"error": "Failed to convert version: 9223372036854775808 to numeric."},
        )
        limit = inspect.signature(ModelServer).parameters["max_message_bytes"]
        limit = limit.default  # the command has no flag for it
        assert limit == 16 * 1024 * 1024  # what the message below says
        row = {"premise": "x" * (limit + 1), "hypothesis": "y"}
        body = json.dumps({"instances": [row]}).encode()
        assert _request(
            rest_port, "POST", "/v1/models/nli:predict", body, chunked=True
        ) == (
            413,
            {
                "error": "the request body is over the limit of 16777216 bytes; "
                "send fewer rows per request"
            },
        )
        assert _request(rest_port, "GET", "/v1/models/nli")[0] == 200  # still up
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0
    assert "Traceback" not in log.read_text()
