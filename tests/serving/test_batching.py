"""RequestBatcher, BatchingConfig, shipped config files (no model needed)."""

import threading
import time

import grpc
import numpy as np
import pytest

from serving.server.batching_config import BatchingConfig
from serving.server.request_batcher import RequestBatcher
from serving.server.request_error import RequestError
from tests.serving.conftest import REPO, wait_until


class SlowModel:
    """Doubles ``x``; records each batch size; takes ``delay`` seconds per call."""

    def __init__(self, delay=0.05, fail_on=None):
        self.delay = delay
        self.fail_on = fail_on
        self.sizes = []

    def __call__(self, inputs):
        self.sizes.append(len(inputs["x"]))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in inputs["x"]:
            raise ValueError("boom")
        return {"y": inputs["x"] * 2, "s": np.array([b"r"] * len(inputs["x"]), object)}


def submit_all(batcher, payloads):
    results, errors = {}, {}

    def one(i, x):
        try:
            results[i] = batcher.submit({"x": x})
        except Exception as err:
            errors[i] = err

    threads = [
        threading.Thread(target=one, args=(i, x)) for i, x in enumerate(payloads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


def test_concurrent_requests_are_merged_and_split_back():
    model = SlowModel()
    batcher = RequestBatcher(model, max_batch_size=8)
    payloads = [np.arange(i, i + 1 + i % 3) for i in range(12)]
    results, errors = submit_all(batcher, payloads)
    batcher.close()
    assert errors == {}
    for i, x in enumerate(payloads):
        np.testing.assert_array_equal(results[i]["y"], x * 2)
        assert len(results[i]["s"]) == len(x)
    assert max(model.sizes) <= 8
    assert len(model.sizes) < 12 and sum(model.sizes) == sum(len(x) for x in payloads)


def test_timeout_waits_for_more_rows():
    model = SlowModel(delay=0)
    batcher = RequestBatcher(model, max_batch_size=4, batch_timeout_micros=300_000)
    started = time.monotonic()
    results, _ = submit_all(batcher, [np.array([1]), np.array([2])])
    batcher.close()
    assert model.sizes == [2]  # one batch, released by the timeout
    assert 0.25 < time.monotonic() - started < 5


def test_a_failing_batch_fails_its_requests_only():
    model = SlowModel(delay=0.02, fail_on=99)
    batcher = RequestBatcher(model, max_batch_size=1)
    results, errors = submit_all(batcher, [np.array([1]), np.array([99])])
    batcher.close()
    assert list(results) == [0] and list(errors) == [1]
    assert str(errors[1]) == "boom"


def test_full_queue_answers_unavailable():
    gate = threading.Event()

    running = threading.Event()

    def blocked(inputs):
        running.set()
        gate.wait(60)
        return {"y": inputs["x"]}

    batcher = RequestBatcher(blocked, max_batch_size=1, max_enqueued_batches=1)
    threads = [
        threading.Thread(target=batcher.submit, args=({"x": np.array([i])},))
        for i in range(2)
    ]
    # The first is running, then the second fills the queue.
    threads[0].start()
    assert running.wait(60), "the first request never ran"
    threads[1].start()
    wait_until(lambda: batcher._pending, 60, "the second request to queue")
    with pytest.raises(RequestError) as info:
        batcher.submit({"x": np.array([7])})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert "the batching queue is full (1 rows)" in str(info.value)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    batcher.close()


def test_close_runs_what_is_queued_then_runs_directly():
    model = SlowModel(delay=0.05)
    batcher = RequestBatcher(model, max_batch_size=1)
    results = {}
    thread = threading.Thread(
        target=lambda: results.update(
            submit_all(batcher, [np.array([i]) for i in range(3)])[0]
        )
    )
    thread.start()
    wait_until(lambda: model.sizes, 60, "the first batch to run", interval=0.001)
    batcher.close()  # while the others wait behind it
    thread.join(timeout=10)
    assert sorted(results) == [0, 1, 2]
    assert batcher.submit({"x": np.array([5])})["y"].tolist() == [10]


def test_batching_config_text_and_shipped_file():
    config = BatchingConfig.from_text(
        "# comment\nmax_batch_size { value: 16 }\nbatch_timeout_micros { value: 500 }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 16\n"
    )
    assert (config.max_batch_size, config.batch_timeout_micros) == (16, 500)
    shipped = BatchingConfig.from_file(REPO / "serving" / "server" / "batching.config")
    assert (shipped.max_batch_size, shipped.num_batch_threads) == (32, 4)
    with pytest.raises(ValueError, match="unsupported field"):
        BatchingConfig.from_text("max_batch_sizes { value: 3 }")
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        BatchingConfig.from_text("max_batch_size { value: 0 }")


def test_shipped_model_config_parses():
    from serving.server.model_manager import ModelManager

    manager = ModelManager.from_config_file(
        REPO / "serving" / "server" / "models.config"
    )
    model = manager._models["nli"]
    assert model["labels"] == {"stable": 1}
    assert model["config"].base_path == "/models/nli"
    assert list(model["config"].model_version_policy.specific.versions) == [1]


def test_several_batch_threads_share_the_queue():
    model = SlowModel(delay=0.02)
    batcher = RequestBatcher(model, max_batch_size=4, num_batch_threads=3)
    payloads = [np.array([i]) for i in range(40)]
    results, errors = submit_all(batcher, payloads)
    batcher.close()
    assert errors == {}
    assert [results[i]["y"].tolist() for i in range(40)] == [[2 * i] for i in range(40)]
    assert max(model.sizes) <= 4 and sum(model.sizes) == 40


def close_within(batcher, seconds=10):
    """Close ``batcher`` in a daemon thread; fail (not hang) on a deadlock."""
    closer = threading.Thread(target=batcher.close, daemon=True)
    closer.start()
    closer.join(seconds)
    assert not closer.is_alive(), "close() did not return: a batch slot leaked"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stress_no_request_is_lost_and_no_slot_leaks(threads):
    rng = np.random.default_rng(threads)
    delays = iter(rng.uniform(0, 0.003, size=10_000))

    def model(inputs):
        time.sleep(next(delays))
        return {"y": inputs["x"] + 1}

    batcher = RequestBatcher(model, max_batch_size=4, num_batch_threads=threads)
    for _ in range(3):
        payloads = [np.arange(1 + i % 3) + i for i in range(48)]
        results, errors = submit_all(batcher, payloads)
        assert errors == {} and len(results) == 48
        for i, x in enumerate(payloads):
            np.testing.assert_array_equal(results[i]["y"], x + 1)
    close_within(batcher)


def test_a_leader_waiting_for_its_batch_to_fill_is_not_handed_a_second_slot():
    # Request A leads and blocks in the model; B takes the second slot and,
    # while it waits for its batch to fill, is still queued. When A finishes
    # it must not pick B (a leader) as the heir of its slot: B would hold two
    # slots, free one, and close() would wait forever for the other.
    release, started = threading.Event(), threading.Event()

    def model(inputs):
        if inputs["x"][0] == 0:
            started.set()
            release.wait(10)
        return {"y": inputs["x"] * 2}

    batcher = RequestBatcher(
        model, max_batch_size=4, batch_timeout_micros=1_000_000, num_batch_threads=2
    )
    results = {}

    def submit(i):
        results[i] = batcher.submit({"x": np.array([i])})["y"].tolist()

    a = threading.Thread(target=submit, args=(0,))
    a.start()
    assert started.wait(10)
    b = threading.Thread(target=submit, args=(1,))
    b.start()
    deadline = time.monotonic() + 10
    while not batcher._pending and time.monotonic() < deadline:
        time.sleep(0.001)
    assert batcher._pending, "B never queued"
    release.set()  # A finishes while B is queued and filling its batch
    for thread in (a, b):
        thread.join(10)
    assert results == {0: [0], 1: [2]}
    close_within(batcher, seconds=5)
