"""SIGTERM under load: in-flight requests finish, new ones get UNAVAILABLE, and
the process exits within --shutdown-grace-s even when model calls overrun it."""

import http.client
import json
import signal
import threading
import time

import grpc
import numpy as np
import pytest

from serving.client.nli_client import NliClient
from tests.serving.conftest import PAIRS, start_server, wait_until

# Every test starts a server process on an exported model.
pytestmark = pytest.mark.slow

SLOW_SERVER = """
import sys, time
from serving.server import command as server
from serving.server import prediction_servicer

original = prediction_servicer.PredictionServicer.predict

def slow(self, request):  # a model call far longer than the grace period
    print("slow model call started", file=sys.stderr, flush=True)
    time.sleep(60)
    return original(self, request)

prediction_servicer.PredictionServicer.predict = slow
server.run(sys.argv[1:])
"""


def rest_predict(rest_port, i, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=timeout)
    try:
        body = {"instances": [{"premise": PAIRS[i][0], "hypothesis": PAIRS[i][1]}]}
        connection.request("POST", "/v1/models/nli:predict", json.dumps(body))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def start_slow_server(model_base, tmp_path, grace):
    """`SLOW_SERVER` with `--shutdown-grace-s grace`; (process, gRPC address,
    REST port, log path)."""
    log = tmp_path / "server.log"
    flags = ("--shutdown-grace-s", str(grace))
    return (*start_server(model_base, log, *flags, code=SLOW_SERVER), log)


def grpc_predict(address, outcomes):
    """One gRPC Predict; appends "answered" or the status code's name."""
    with NliClient(address, timeout=60) as client:
        try:
            client.predict(["a"], ["b"])
            outcomes.append("answered")
        except grpc.RpcError as err:
            outcomes.append(err.code().name)


def test_sigterm_under_load(model_base, reference, tmp_path):
    log = tmp_path / "server.log"
    grace = 10
    proc, address, rest_port = start_server(
        model_base,
        log,
        "--enable-batching",
        "--max-batch-size",
        "64",
        "--batch-timeout-micros",
        "1000000",  # every request sits ~1 s in the queue: always some in flight
        "--shutdown-grace-s",
        str(grace),
    )
    results = []  # (started, finished, protocol, outcome)
    lock = threading.Lock()
    stop = threading.Event()

    def grpc_worker(n):
        with NliClient(address, timeout=30) as client:
            while not stop.is_set():
                i = n % len(PAIRS)
                started = time.monotonic()
                try:
                    _, probs = client.predict([PAIRS[i][0]], [PAIRS[i][1]])
                    ok = np.allclose(probs[0], reference["probabilities"][i], atol=1e-5)
                    outcome = "ok" if ok else "wrong"
                except grpc.RpcError as err:
                    outcome = err.code().name
                with lock:
                    results.append((started, time.monotonic(), "grpc", outcome))
                if outcome != "ok":
                    time.sleep(0.05)

    def rest_worker(n):
        while not stop.is_set():
            i = n % len(PAIRS)
            started = time.monotonic()
            try:
                status, body = rest_predict(rest_port, i)
                if status == 200:
                    probs = body["predictions"][0]["probabilities"]
                    ok = np.allclose(probs, reference["probabilities"][i], atol=1e-5)
                    outcome = "ok" if ok else "wrong"
                else:
                    outcome = f"HTTP {status}"
            except OSError:  # the port is closed: refused
                outcome = "refused"
            with lock:
                results.append((started, time.monotonic(), "rest", outcome))
            if outcome != "ok":
                time.sleep(0.05)

    threads = [threading.Thread(target=grpc_worker, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=rest_worker, args=(n,)) for n in range(3)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(results) >= 20, 120, "20 answered requests")
        # Batches run once a second; signal mid-way, while one is queued.
        count = len(results)
        wait_until(lambda: len(results) > count, 30, "the next batch")
        time.sleep(0.5)
        sigterm = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=grace + 30)
        exited = time.monotonic() - sigterm
        time.sleep(0.5)  # clients see the closed ports
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()
    assert exited < grace, f"exited {exited:.1f}s after SIGTERM"
    before = [r for r in results if r[0] < sigterm - 0.2]
    after = [r for r in results if r[0] > sigterm + 0.2]
    # Everything sent before SIGTERM was answered, correctly, even if it was
    # still queued (up to 1 s) when the signal came.
    assert before and {r[3] for r in before} == {"ok"}
    assert any(r[1] > sigterm for r in before)  # some were in flight at SIGTERM
    # Everything sent after SIGTERM was refused as unavailable.
    outcomes = {r[3] for r in after}
    assert after and outcomes <= {"UNAVAILABLE", "HTTP 503", "refused"}, outcomes
    text = log.read_text()
    assert "shutting down: finishing in-flight requests (grace 10s)" in text
    assert text.rstrip().endswith("shutdown complete")


def test_exit_within_grace_when_model_calls_overrun(model_base, tmp_path):
    grace = 3
    proc, address, rest_port, log = start_slow_server(model_base, tmp_path, grace)
    errors = []

    def grpc_call():
        grpc_predict(address, errors)

    def rest_call():
        try:
            errors.append(f"HTTP {rest_predict(rest_port, 0, timeout=60)[0]}")
        except OSError as err:  # the process went away mid-request
            errors.append(type(err).__name__)

    threads = [threading.Thread(target=f) for f in (grpc_call, grpc_call, rest_call)]
    try:
        for thread in threads:
            thread.start()
        wait_until(
            lambda: log.read_text().count("slow model call started") == 3,
            60,
            "all three requests to sleep in the model call",
        )
        sigterm = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        exited = time.monotonic() - sigterm
    finally:
        for thread in threads:
            thread.join(timeout=60)
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()
    assert exited < grace + 2, f"exited {exited:.1f}s after SIGTERM (grace {grace}s)"
    assert "answered" not in errors and len(errors) == 3, errors
    text = log.read_text()
    assert "some requests were still running after the 3s grace period" in text


def test_rest_answers_503_while_grpc_requests_finish(model_base, tmp_path):
    # Only a gRPC request is in flight: the REST port must stay open through
    # the grace period and answer new requests 503, not refuse the connection.
    grace = 10
    proc, address, rest_port, log = start_slow_server(model_base, tmp_path, grace)
    outcome = []
    thread = threading.Thread(target=grpc_predict, args=(address, outcome))
    try:
        thread.start()
        wait_until(
            lambda: "slow model call started" in log.read_text(),
            60,
            "the gRPC request to sleep in the model call",
        )
        proc.send_signal(signal.SIGTERM)
        wait_until(
            lambda: "shutting down" in log.read_text(), 60, "the shutdown to begin"
        )
        status, body = rest_predict(rest_port, 0, timeout=30)
        code = proc.wait(timeout=60)
    finally:
        thread.join(timeout=60)
        if proc.poll() is None:
            proc.kill()
    assert status == 503, body
    assert list(body) == ["error"] and "shutting down" in body["error"], body
    # the process exits at the end of the grace period, cancelling the call
    assert code == 0 and len(outcome) == 1, (code, outcome, log.read_text())
    assert outcome[0] in ("CANCELLED", "UNAVAILABLE"), outcome
