"""The shell every command line shares (`keras_metaopt.cli`): `--help` without
TensorFlow and with every default, one `--log-level`, one error format, and
TensorFlow's native start-up lines kept off stderr."""

import logging
import os
import subprocess
import sys

import pytest

from keras_metaopt import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each command's module, and one flag with a non-trivial default its --help
# must show.
COMMANDS = {
    "trainers.meta": "--meta-interval META_INTERVAL",
    "trainers.finetune": "--freeze-bottom K",
    "trainers.evaluate": "--bootstrap-samples BOOTSTRAP_SAMPLES",
    "serving.export": "--precision {float32,mixed_bfloat16}",
    "serving.server": "--port PORT",
    "serving.client": "--timeout TIMEOUT",
    "tools.make_tiny_preset": "--vocabulary-size VOCABULARY_SIZE",
    "tools.plot_rates": "--log-level {DEBUG,INFO,WARNING,ERROR}",
    "benchmarks.xnli_proxy": "--seeds-rest SEEDS_REST",
    "probes.horizon": "--heldout-examples HELDOUT_EXAMPLES",
    "probes.metagrad": "--epsilon EPSILON",
}
DEFAULTS = {
    "trainers.meta": "(default: 15)",
    "trainers.finetune": "(default: 0)",
    "trainers.evaluate": "(default: 10000)",
    "serving.export": "(default: float32)",
    "serving.server": "(default: 8500)",
    "serving.client": "(default: 30.0)",
    "tools.make_tiny_preset": "(default: 3000)",
    "tools.plot_rates": "(default: INFO)",
    "benchmarks.xnli_proxy": "(default: 2)",
    "probes.horizon": "(default: 320)",
    "probes.metagrad": "(default: 0.25)",
}
HEAVY = ("tensorflow", "keras", "keras_hub", "numpy")


def _without_tf_env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_answers_without_tensorflow_and_shows_the_defaults(module):
    code = (
        "import contextlib, io, runpy, sys\n"
        f"sys.argv = [{module!r}, '--help']\n"
        "out = io.StringIO()\n"
        "try:\n"
        "    with contextlib.redirect_stdout(out):\n"
        f"        runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as stop:\n"
        "    assert stop.code in (0, None), stop.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(out.getvalue()); print('heavy:', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_without_tf_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] == "heavy: []"
    text = " ".join(done.stdout.split())  # argparse wraps lines
    flag = COMMANDS[module]
    assert flag in text
    after = text[text.rindex(flag) :]  # the options list, after the usage
    next_flag = after.find(" --", len(flag))
    assert DEFAULTS[module] in after[: next_flag if next_flag > 0 else None]
    assert "--log-level {DEBUG,INFO,WARNING,ERROR}" in text


def _parser():
    parser = cli.parser("python -m demo", "Demo.")
    parser.add_argument("--count", type=int, default=0, help="How many.")
    parser.add_argument("--rate", type=float, default=0.5, help="A rate.")
    parser.add_argument("--name", help="No default.")
    parser.add_argument("--dry-run", action="store_true", help="A switch.")
    parser.add_argument("--mode", default="a", help="Mode (default: %(default)s).")
    cli.add_log_level_flag(parser, default="WARNING")
    return parser


def test_help_shows_defaults_including_zero_but_not_none_or_a_switch():
    text = " ".join(_parser().format_help().split())
    assert "How many. (default: 0)" in text
    assert "A rate. (default: 0.5)" in text
    assert "No default. --dry-run" in text  # no "(default: None)"
    assert "A switch. --mode" in text  # no "(default: False)"
    assert text.count("(default: a)") == 1  # a help naming it is left alone
    assert "(default: WARNING)" in text


@pytest.mark.parametrize("given", ["debug", "Info", "WARNING", "error"])
def test_log_level_takes_any_case(given):
    assert _parser().parse_args(["--log-level", given]).log_level == given.upper()


def test_a_bad_flag_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["--count", "many"])
    assert stop.value.code == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        "demo: error: argument --count: invalid int value: 'many' (see --help)\n"
    )
    with pytest.raises(SystemExit):
        _parser().parse_args(["--log-level", "verbose"])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "demo: error: argument --log-level: invalid choice: 'VERBOSE'"
    )


def test_error_is_one_line_in_the_command_format(capsys):
    cli.error("python -m serving.client", ValueError("bad\n  row\tthere"))
    assert capsys.readouterr().err == "serving.client: error: bad row there\n"
    with pytest.raises(cli.BadInput) as stop:
        cli.fail("python -m trainers.meta", ["--a 1: no", "--b 2: no"])
    assert stop.value.code == 2 and stop.value.problems == ["--a 1: no", "--b 2: no"]
    assert capsys.readouterr().err == (
        "trainers.meta: error: --a 1: no\ntrainers.meta: error: --b 2: no\n"
    )


def test_native_stderr_is_dropped_unless_the_block_fails(capfd):
    with cli._native_stderr_captured():
        os.write(2, b"I0000 native start-up noise\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError, match="broken"):
        with cli._native_stderr_captured():
            os.write(2, b"the reason it broke\n")
            raise ImportError("broken")
    assert capfd.readouterr().err == "the reason it broke\n"
    os.write(2, b"after\n")  # file descriptor 2 is back
    assert capfd.readouterr().err == "after\n"


def test_configure_logging_silences_tensorflow_below_debug(monkeypatch):
    for name in ("", "absl"):  # restored afterwards
        monkeypatch.setattr(
            logging.getLogger(name), "level", logging.getLogger(name).level
        )
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cli.configure_logging("debug")
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert logging.getLogger().level == logging.DEBUG
    cli.configure_logging("info")
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger("absl").level == logging.WARNING
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own choice stays
    cli.configure_logging("warning")
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Redirected:
    """A stream that is not a terminal (a file or a pipe)."""

    def isatty(self):
        return False


def test_progress_when_redirected_is_plain_lines_every_interval(caplog):
    clock = _Clock()
    progress = cli.Progress(
        "english", 937, "step", start=10, stream=_Redirected(),
        every_seconds=30, clock=clock,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="keras_metaopt.progress"):
        clock.now += 21.0  # 10 steps in 21 s: too soon for a line
        progress.update(20, [("loss", 1.09321)])
        clock.now += 21.0  # 30 steps in 42 s: 1.4 s/step, 897 to go: 1255.8 s
        progress.update(40, [("loss", 1.0932149)])
        clock.now += 1.0
        progress.update(50, [("loss", 1.0)])  # too soon again
        clock.now += 1000.0  # 927 steps in 1043 s
        progress.update(937, [("loss", 0.5), ("acc", 0.75)])  # the end: always
    assert [r.getMessage() for r in caplog.records] == [
        "english: step 40/937 (4%), loss 1.0932; 1.40 s/step, ETA 20m 56s",
        "english: step 937/937 (100%), loss 0.5000, acc 0.7500; 1.13 s/step",
    ]
    text = "".join(r.getMessage() for r in caplog.records)
    assert "\r" not in text and "\b" not in text and "\x1b" not in text


def test_progress_durations():
    assert [cli._duration(s) for s in (7.4, 60, 1884, 3725)] == [
        "7s", "1m 00s", "31m 24s", "1h 02m",
    ]  # fmt: skip


def test_the_resume_command_drops_overwrite():
    # Rerunning with --overwrite would delete the checkpoints it is to resume.
    argv = ["--output-dir", "runs/a b", "--overwrite", "--seed", "1"]
    expected = "python -m trainers.meta --output-dir 'runs/a b' --seed 1"
    assert cli.resume_command("python -m trainers.meta", argv) == expected
    stop = cli.StopRequest("python -m trainers.meta", argv)
    assert stop.command == expected
