"""A client for TF Serving's REST API (NLI signature), on the standard library."""

import http.client
import json
import ssl
from urllib.parse import quote

import numpy as np

from serving.metadata_fields import REQUEST_LIMITS_FIELD
from serving.saved_model_layout import PREDICT_SIGNATURE


class RestError(Exception):
    """A non-200 answer: ``status`` (HTTP code) and the server's error message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RestNliClient:
    """``NliClient``'s methods over ``POST /v1/models/NAME:predict`` and friends.

    One keep-alive HTTP(S) connection; works against tensorflow_model_server's
    REST port too (``request_limits`` is then None). Failures raise
    :class:`RestError` (an answer) or ``OSError`` (no answer).

    Usage (needs a running server):

        with RestNliClient("127.0.0.1:8501") as client:
            labels, probs = client.predict(["A man plays."], ["A man is playing."])
    """

    def __init__(
        self,
        target: str = "127.0.0.1:8501",
        model_name: str = "nli",
        signature_name: str = PREDICT_SIGNATURE,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
        tls: bool | None = None,
    ):
        if version is not None and version_label is not None:
            raise ValueError("give a version or a version label, not both")
        self.target = target
        self.signature_name = signature_name
        self.timeout = timeout
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--server must be HOST:PORT; got {target!r}")
        if tls or (tls is None and ca_file is not None):  # HTTPS
            context = ssl.create_default_context(cafile=ca_file)
            self.connection = http.client.HTTPSConnection(
                host, int(port), timeout=timeout, context=context
            )
        else:
            self.connection = http.client.HTTPConnection(
                host, int(port), timeout=timeout
            )
        self.base = f"/v1/models/{quote(model_name, safe='')}"
        if version is not None:
            self.base += f"/versions/{int(version)}"
        elif version_label is not None:
            self.base += f"/labels/{quote(version_label, safe='')}"

    def _call(self, method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):  # once more if the kept-alive connection was closed
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError):
                self.connection.close()
                if attempt:
                    raise
        try:
            document = json.loads(payload)
        except ValueError:
            document = {"error": payload.decode("utf-8", errors="replace")}
        if response.status != 200:
            raise RestError(response.status, str(document.get("error", document)))
        return document

    def predict(self, premises, hypotheses) -> tuple[list[str], np.ndarray]:
        """Label names and ``[batch, 3]`` float32 probabilities for the pairs."""
        if len(premises) != len(hypotheses):
            raise ValueError("premises and hypotheses differ in length")
        body = {
            "signature_name": self.signature_name,
            "inputs": {"premise": list(premises), "hypothesis": list(hypotheses)},
        }
        outputs = self._call("POST", self.base + ":predict", body)["outputs"]
        return (
            list(outputs["label_name"]),
            np.asarray(outputs["probabilities"], dtype=np.float32),
        )

    def metadata(self) -> dict:
        """``GET .../metadata``."""
        return self._call("GET", self.base + "/metadata")

    def request_limits(self) -> dict | None:
        """This server's request limits from the metadata, or None."""
        return self.metadata().get("metadata", {}).get(REQUEST_LIMITS_FIELD)

    def status(self) -> dict:
        """``GET /v1/models/NAME[/versions/N|/labels/L]``."""
        return self._call("GET", self.base)

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    def __enter__(self) -> "RestNliClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
