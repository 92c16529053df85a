"""The REST edge cases of TF Serving through `python -m serving.server` as a
user starts it (test_rest.py covers them on an in-process server): a version
too large for int64 is 400, a chunked body over the limit is 413, and neither
leaves a traceback in the server's log."""

import http.client
import inspect
import json
import signal

import pytest

from serving.server.model_server import ModelServer
from tests.serving.conftest import start_server

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


def test_rest_edge_cases_through_the_server_command(model_base, tmp_path):
    log = tmp_path / "server.log"
    proc, _, rest_port = start_server(model_base, log)
    try:
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
