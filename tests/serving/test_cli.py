"""Command lines: client (subprocess and in-process), --help, SIGTERM shutdown."""

import json
import re
import signal
import socket
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest

from serving.client import command as client
from serving.client.nli_client import NliClient
from serving.export import command as export
from serving.server import command as server
from tests.serving.conftest import (
    MARKED_SERVER,
    PAIRS,
    QUEUE_MARKER,
    REPO,
    free_port,
    run_module,
    wait_until,
)

LABELS = ["entailment", "neutral", "contradiction"]


def write_tsv(path, rows, header="premise\thypothesis\tlabel"):
    path.write_bytes((header + "\n").encode() + b"".join(r + b"\n" for r in rows))
    return path


@pytest.mark.slow
def test_client_tsv_round_trip_subprocess(server, reference, tmp_path):
    gold = [0, 1, 2, 0, 1, 2, 0, 1]
    rows = [f"{p}\t{h}\t{LABELS[g]}".encode() for (p, h), g in zip(PAIRS, gold)]
    tsv = write_tsv(tmp_path / "pairs.tsv", rows)
    done = run_module(
        "serving.client",
        "--server",
        server.address,
        "--tsv",
        str(tsv),
        "--batch-size",
        "3",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "label\tp_entailment\tp_neutral\tp_contradiction"
    rows = [line.split("\t") for line in lines[1:-1]]
    probs = np.array([[float(v) for v in row[1:]] for row in rows])
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-6, rtol=0)
    predicted = reference["probabilities"].argmax(axis=1)
    assert [row[0] for row in rows] == [LABELS[i] for i in predicted]
    correct = int((predicted == np.array(gold)).sum())
    assert lines[-1] == f"# accuracy {correct / 8:.4f} ({correct}/8)"


@pytest.mark.slow
def test_client_single_pair(server, reference, capsys):
    assert (
        client.main(
            [
                "--server",
                server.address,
                "--premise",
                PAIRS[0][0],
                "--hypothesis",
                PAIRS[0][1],
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    label, *probs = out[1].split("\t")
    np.testing.assert_allclose(
        [float(p) for p in probs], reference["probabilities"][0], atol=1e-6, rtol=0
    )
    assert label == LABELS[int(reference["probabilities"][0].argmax())]


@pytest.mark.parametrize(
    "rows,header,message",
    [
        (
            [b"a\tb\tentailment", b"only one field"],
            None,
            "pairs.tsv:3: got 1 columns, expected 3",
        ),
        (
            [b"a\tb\tmaybe"],
            None,
            "pairs.tsv:2: unknown label 'maybe' (expected one of entailment, neutral, "
            "contradiction, or contradictory)",
        ),
        (
            [b"a\tb", b"c\xff\td"],
            "premise\thypothesis",
            "pairs.tsv:3: not valid UTF-8: 'utf-8' codec can't decode byte 0xff in "
            "position 1",
        ),
        (
            [b"a\tb"],
            "premise\ttext",
            "pairs.tsv:1: header has no hypothesis column (accepted names: "
            "hypothesis, hypo, sentence2)",
        ),
        (
            [b'"quoted\ttab"\tx'],
            "premise\thypothesis",
            "pairs.tsv:2: got 3 columns, expected 2",
        ),
        (  # numbers are refused, as in training: sources disagree on their order
            [b"a\tb\t0"],
            None,
            "pairs.tsv:2: unknown label '0' (expected one of entailment, neutral, "
            "contradiction, or contradictory)",
        ),
    ],
    ids=["field count", "label", "utf-8", "header", "no quoting", "number label"],
)
def test_client_reports_bad_tsv_rows(tmp_path, capsys, rows, header, message):
    tsv = write_tsv(
        tmp_path / "pairs.tsv", rows, header or "premise\thypothesis\tlabel"
    )
    assert client.main(["--tsv", str(tsv), "--server", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"serving.client: error: {tmp_path}/{message}")


@pytest.mark.slow
def test_client_reports_grpc_status(server, tmp_path, capsys):
    argv = ["--premise", "a", "--hypothesis", "b", "--timeout", "5"]
    assert client.main(["--server", server.address, "--model-name", "nope", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"serving.client: error: {server.address} answered NOT_FOUND: "
        "Servable not found"
    )
    port = free_port()
    assert client.main(["--server", f"127.0.0.1:{port}", *argv]) == 1
    assert "answered UNAVAILABLE" in capsys.readouterr().err
    assert client.main(["--tsv", str(tmp_path / "missing.tsv")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("module", [client, export, server])
def test_help_documents_every_flag(module):
    parser = module.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, (
                f"{module.__name__}: {action.option_strings} has no help"
            )
    assert parser.format_help().startswith("usage: python -m serving.")


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(model_base, reference, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                MARKED_SERVER,
                "--model-base-path",
                str(model_base),
                "--port",
                str(port),
                "--enable-batching",
                "--max-batch-size",
                "64",
                "--batch-timeout-micros",
                "3000000",
                "--grace-seconds",  # the old name of --shutdown-grace-s
                "20",
                "--rest-api-port",
                "0",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    address = f"127.0.0.1:{port}"
    try:
        wait_until(
            lambda: "listening on" in log.read_text() or proc.poll() is not None,
            120,
            "the server to start",
        )
        assert proc.poll() is None, log.read_text()
        result = {}

        def slow_request():  # sits in the batch queue for 3 s (batch_timeout)
            with NliClient(address, timeout=30) as c:
                try:
                    result["probs"] = c.predict(
                        [p for p, _ in PAIRS], [h for _, h in PAIRS]
                    )[1]
                except grpc.RpcError as err:
                    result["error"] = err

        thread = threading.Thread(target=slow_request)
        thread.start()
        # It then waits 3 s for more rows: signal while it is queued.
        wait_until(lambda: QUEUE_MARKER in log.read_text(), 60, "the queued request")
        proc.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "error" not in result, result.get("error")
    np.testing.assert_allclose(
        result["probs"], reference["probabilities"], atol=1e-5, rtol=0
    )
    text = log.read_text()
    assert re.search(r"shutting down: finishing in-flight requests", text)
    assert text.rstrip().endswith("shutdown complete")
    with NliClient(address, timeout=5) as c, pytest.raises(grpc.RpcError) as info:
        c.predict(["a"], ["b"])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_refuses_a_missing_base_path(tmp_path, capsys):
    argv = ["--model-base-path", str(tmp_path / "nowhere"), "--port", "0"]
    assert server.main(argv) == 2  # bad input; a busy port (below) is 1
    assert capsys.readouterr().err == (
        f"serving.server: error: base path {tmp_path / 'nowhere'} of model 'nli' is "
        "not a directory\n"
    )


@pytest.mark.slow
def test_client_splits_a_tsv_within_the_server_limit(server, reference, tmp_path):
    rows = [f"{p}\t{h}".encode() for p, h in PAIRS] * 75  # 600 pairs
    tsv = write_tsv(tmp_path / "pairs.tsv", rows, "premise\thypothesis")
    done = run_module(
        "serving.client", "--server", server.address, "--tsv", str(tsv),
        "--batch-size", "1000", "--log-level", "INFO",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--batch-size 1000 is over the server's limit; using 256" in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 601
    probs = np.array([[float(v) for v in line.split("\t")[1:]] for line in lines[1:]])
    expected = np.tile(reference["probabilities"], (75, 1))
    np.testing.assert_allclose(probs, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "flag,limits,expected",
    [
        (1000, {"max_request_batch_size": 256}, 256),
        (None, {"max_request_batch_size": 256}, 256),
        (10, {"max_request_batch_size": 256}, 10),
        (None, None, 32),  # tensorflow_model_server: no limit in its metadata
        (1000, None, 1000),
    ],
)
def test_client_batch_size(flag, limits, expected):
    args = client.build_parser().parse_args(
        ["--tsv", "x"] + (["--batch-size", str(flag)] if flag else [])
    )
    log = client.logging.getLogger("test")
    assert client.batch_size(args, limits, 600, log) == expected


@pytest.mark.slow
def test_client_rest_jsonl_subprocess(server, reference, tmp_path):
    gold = [0, 1, 2, 0, 1, 2, 0, 1]
    rows = [f"{p}\t{h}\t{LABELS[g]}".encode() for (p, h), g in zip(PAIRS, gold)]
    tsv = write_tsv(tmp_path / "pairs.tsv", rows)
    rest = server.rest_url.removeprefix("http://")
    done = run_module(
        "serving.client", "--rest", "--server", rest, "--tsv", str(tsv),
        "--format", "jsonl", "--batch-size", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["line"] for r in records] == list(range(2, 10))
    assert [r["gold"] for r in records] == [LABELS[g] for g in gold]
    probs = np.array([[r["probabilities"][name] for name in LABELS] for r in records])
    np.testing.assert_allclose(probs, reference["probabilities"], atol=1e-6, rtol=0)
    predicted = reference["probabilities"].argmax(axis=1)
    assert [r["label"] for r in records] == [LABELS[i] for i in predicted]
    correct = int((predicted == np.array(gold)).sum())
    assert done.stderr.strip() == f"accuracy {correct / 8:.4f} ({correct}/8)"


@pytest.mark.slow
def test_client_metadata_and_status_both_apis(server, capsys):
    rest = ["--rest", "--server", server.rest_url.removeprefix("http://")]
    grpc_args = ["--server", server.address]
    answers = {}
    for name, flags in (("grpc", grpc_args), ("rest", rest)):
        for command in ("metadata", "status"):
            assert client.main([command, *flags]) == 0
            answers[name, command] = json.loads(capsys.readouterr().out)
    assert (
        answers["grpc", "status"]
        == answers["rest", "status"]
        == {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
    )
    assert answers["grpc", "metadata"] == answers["rest", "metadata"]
    meta = answers["rest", "metadata"]
    assert meta["model_spec"]["version"] == "1"
    assert meta["metadata"]["request_limits"]["max_request_batch_size"] == 256
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]


@pytest.mark.slow
def test_client_rest_errors(server, capsys):
    rest = server.rest_url.removeprefix("http://")
    argv = ["--rest", "--premise", "a", "--hypothesis", "b", "--timeout", "5"]
    assert client.main([*argv, "--server", rest, "--model-name", "nope"]) == 1
    assert capsys.readouterr().err.startswith(
        f"serving.client: error: {rest} answered HTTP 404: "
        "Servable not found for request: Latest(nope)"
    )
    port = free_port()
    assert client.main([*argv, "--server", f"127.0.0.1:{port}"]) == 1
    assert capsys.readouterr().err.startswith(
        f"serving.client: error: cannot reach http://127.0.0.1:{port}: [Errno 111]"
    )
    with pytest.raises(SystemExit):
        client.main(["status", "--premise", "a", "--hypothesis", "b"])
    assert "status takes no pairs" in capsys.readouterr().err


@pytest.mark.slow
def test_client_does_not_import_tensorflow(server):
    code = (
        "import sys; from serving.client import command as client; "
        f"rc = client.main(['--server', '{server.address}', '--premise', 'a', "
        "'--hypothesis', 'b']); "
        "heavy = [m for m in ('tensorflow.python', 'keras', 'keras_hub') "
        "if m in sys.modules]; print('heavy:', heavy); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "heavy: []"
    assert (
        done.stdout.splitlines()[0] == "label\tp_entailment\tp_neutral\tp_contradiction"
    )


@pytest.mark.slow
def test_server_refuses_a_busy_rest_port(model_base, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["--model-base-path", str(model_base), "--port", "0"]
        assert server.main([*argv, "--rest-api-port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port} for the REST API" in err
    assert "pick another --rest-api-port (0 turns REST off)" in err
    with pytest.raises(SystemExit):
        server.main([*argv, "--port", "8600", "--rest-api-port", "8600"])
    assert "--rest-api-port must differ from --port" in capsys.readouterr().err


@pytest.mark.parametrize(
    "given,rest,expected",
    [
        (None, False, ("127.0.0.1:8500", False)),
        (None, True, ("127.0.0.1:8501", False)),
        ("localhost", False, ("localhost:8500", False)),  # not gRPC's 443
        ("localhost", True, ("localhost:8501", False)),
        ("http://h:9000/", True, ("h:9000", False)),
        ("HTTPS://h", True, ("h:8501", True)),
        ("[::1]", False, ("[::1]:8500", False)),
        ("[::1]:7", True, ("[::1]:7", False)),
    ],
)
def test_client_server_address(given, rest, expected):
    assert client.server_address(given, rest) == expected


@pytest.mark.parametrize(
    "given,rest,message",
    [
        ("http://h:1", False, "a gRPC server is HOST[:PORT] (add --rest for the REST API)"),
        ("ftp://h:1", True, "a REST server is HOST[:PORT]"),
        ("h:x", False, "the port must be a number in 1-65535"),
        ("h:0", True, "the port must be a number in 1-65535"),
        ("::1", False, "write an IPv6 address in brackets, [::1]"),
        ("http://h:8501/v1/models/nli", True, "without a path"),
    ],
)  # fmt: skip
def test_client_server_address_refused(given, rest, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        client.server_address(given, rest)


SIGNATURES = {
    "signature_def": {
        "signature_def": {
            "serving_default": {
                "inputs": {"premise": {}, "hypothesis": {}},
                "outputs": {"probabilities": {}, "label": {}, "label_name": {}},
            },
            "classify": {
                "inputs": {"inputs": {}},
                "outputs": {"classes": {}, "scores": {}},
            },
        }
    }
}


def test_client_checks_the_signature_against_the_metadata():
    client.check_signature("serving_default", SIGNATURES)
    client.check_signature("anything", {})  # a server listing none: not checked
    with pytest.raises(client.SignatureMismatch) as info:
        client.check_signature("classify", SIGNATURES)
    assert str(info.value) == (
        "--signature-name classify: this signature has no inputs premise, "
        "hypothesis and no outputs probabilities, label_name, which the client "
        "sends and reads; use --signature-name serving_default"
    )
    with pytest.raises(client.SignatureMismatch) as info:
        client.check_signature("nope", SIGNATURES)
    assert str(info.value) == (
        "--signature-name nope: the model has no such signature (it has "
        "classify, serving_default); use --signature-name serving_default"
    )


@pytest.mark.slow
def test_client_flags_through_a_real_server(server, capsys):
    pair = ["--premise", "a", "--hypothesis", "b", "--timeout", "5"]
    # classify: one line on what is wrong with it, nothing about output filters
    for protocol in ([], ["--rest", "--server", server.rest_url]):
        argv = [*pair, "--signature-name", "classify", *protocol]
        if not protocol:
            argv += ["--server", server.address]
        assert client.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("serving.client: error: --signature-name classify: ")
        assert "filter" not in err and len(err.splitlines()) == 1
    # http://HOST:PORT with --rest, as the server's own URL is written
    assert client.main([*pair, "--rest", "--server", server.rest_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "label\tp_entailment\tp_neutral\tp_contradiction"
    assert len(out) == 2
    # a failed request prints nothing on stdout, not even the TSV header
    port = free_port()
    assert client.main([*pair, "--server", f"127.0.0.1:{port}"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("serving.client: error: 127.0.0.1:")
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(SystemExit) as stop:
            client.main([*pair[:4], "--timeout", bad])
        assert stop.value.code == 2
        assert capsys.readouterr().err == (
            f"serving.client: error: --timeout {float(bad):g}: must be a number of "
            "seconds > 0 (see --help)\n"
        )
