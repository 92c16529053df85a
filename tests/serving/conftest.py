"""Fixtures for the serving tests: one tiny exported model per session."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

PAIRS = [
    ("A man is playing a guitar.", "A man is playing music."),
    ("the cat sleeps on the sofa", "a dog runs in the park"),
    ("two women walk outside", "nobody is outside"),
    ("Ένας άνδρας παίζει κιθάρα.", "Ο άνδρας δεν παίζει μουσική."),
    ("ایک آدمی گٹار بجا رہا ہے۔", "یہ آدمی موسیقی نہیں بجا رہا ہے۔"),
    ("a red car", "a blue car"),
    ("the child eats food", "the child is happy"),
    ("", "an empty premise"),
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A server that says on stderr when a request enters the batching queue, so
# that a test can signal it while the request is known to be in flight
# instead of sleeping for a time that a busy machine may not honour.
QUEUE_MARKER = "request entered the batching queue"
MARKED_SERVER = f"""
import sys
from serving.server import command as server
from serving.server import request_batcher

original = request_batcher.RequestBatcher.submit

def submit(self, inputs):
    print({QUEUE_MARKER!r}, file=sys.stderr, flush=True)
    return original(self, inputs)

request_batcher.RequestBatcher.submit = submit
server.run(sys.argv[1:])
"""


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns a true value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_server(model_base, log, *flags, code=None):
    """`python -m serving.server` (or `code` with the same arguments) on
    `model_base`, its stderr in `log`; (process, gRPC address, REST port)
    once its REST API listens."""
    port, rest_port = free_port(), free_port()
    command = [sys.executable]
    command += ["-c", code] if code else ["-m", "serving.server"]
    command += [
        "--model-base-path",
        str(model_base),
        "--port",
        str(port),
        "--rest-api-port",
        str(rest_port),
        *flags,
    ]
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr
        )
    wait_until(
        lambda: "REST API on" in log.read_text() or proc.poll() is not None,
        120,
        "the server to start",
    )
    assert proc.poll() is None, log.read_text()
    return proc, f"127.0.0.1:{port}", rest_port


def run_module(
    module: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def serve_pairs(version_dir, pairs=PAIRS):
    """The outputs of an exported version's `serving_default` for `pairs`,
    reloaded in this process (numpy arrays)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tf-text ops)

    loaded = tf.saved_model.load(str(version_dir))
    out = loaded.signatures["serving_default"](
        premise=tf.constant([p for p, _ in pairs]),
        hypothesis=tf.constant([h for _, h in pairs]),
    )
    return loaded, {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A tiny BERT run directory (random weights, rates.json included)."""
    from keras_metaopt.testing import RandomRunDir

    return RandomRunDir(encoder="bert").write(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="session")
def model_base(run_dir, tmp_path_factory):
    """MODEL_BASE with version 1 exported through the export CLI's main()."""
    from serving.export.command import main

    base = tmp_path_factory.mktemp("models") / "nli"
    assert main(["--run-dir", str(run_dir), "--out", str(base / "1")]) == 0
    return base


@pytest.fixture(scope="session")
def reference(run_dir, model_base):
    """In-process probabilities for PAIRS from the in-memory Keras classifier."""
    import numpy as np
    import tensorflow as tf

    from serving.export.run_dir import RunDir

    classifier = RunDir(run_dir).load_classifier()
    premises = [p for p, _ in PAIRS]
    hypotheses = [h for _, h in PAIRS]
    x = classifier.preprocessor(x=(premises, hypotheses))
    logits = classifier(x, training=False)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
    return {"classifier": classifier, "probabilities": probs.astype(np.float32)}


@pytest.fixture(scope="session")
def server(model_base):
    """An in-process server (batching on) for the session; yields its address."""
    from serving.server.batching_config import BatchingConfig
    from serving.server.model_manager import ModelManager
    from serving.server.model_server import ModelServer

    manager = ModelManager.for_model(
        "nli",
        model_base,
        batching=BatchingConfig(enabled=True, max_batch_size=16),
        poll_seconds=0.5,
    )
    srv = ModelServer(manager, port=0, rest_port=0)
    port = srv.start()
    srv.address = f"127.0.0.1:{port}"
    srv.rest_url = f"http://127.0.0.1:{srv.bound_rest_port}"
    yield srv
    srv.stop(grace=5)
