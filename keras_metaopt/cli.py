"""The shell every command line of the project shares.

Trainers, probes, tools, benchmarks and the serving commands all parse,
log and fail the same way:

- `parser(prog, description)`: an argparse parser whose `--help` keeps the
  description's layout and shows every flag's default (`HelpFormatter`), and
  whose own errors are one line (`one_line_errors`). Build it, and parse, before
  importing TensorFlow: `--help` and a bad flag then answer at once.
- `add_log_level_flag`: one `--log-level` (debug, info, warning, error; any
  case). `configure_logging(level)` is the one place that sets up logging; below
  `debug` it also silences TensorFlow's C++ logs (`TF_CPP_MIN_LOG_LEVEL=3`), and
  `import_tensorflow()` imports TensorFlow without the lines its native
  libraries print to stderr on import.
- Bad input: one line per problem on stderr, `PROG: error: …`, exit 2
  (`fail`); argparse's own errors use the same format (`one_line_errors`).
- An unexpected exception: one line `PROG: error: Type: message`, exit 1;
  `--log-level debug` shows the traceback instead (`install_excepthook`).
- Long work shows `Progress`: Keras's bar on a terminal, plain periodic log
  lines (count, losses, seconds per step, ETA) when output is redirected.
- SIGINT / SIGTERM during training: the trainer stops at the next step
  boundary, writes a checkpoint and exits 130 / 143 with one line saying how
  to resume (`StopRequest`, `Interrupted`).

Nothing here imports TensorFlow or Keras (but `Progress` on a terminal).
"""

import argparse
import contextlib
import logging
import os
import pathlib
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_BAD_INPUT = 2
EXIT_ERROR = 1


def program_name(prog):
    """`trainers.meta` from argparse's prog `python -m trainers.meta`."""
    return prog.split()[-1]


class HelpFormatter(
    argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter
):
    """`--help` as written in the description, with each flag's default.

    A default is shown unless the help already names it, or there is none
    (None, or False for a switch).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or action.default is None
            or action.default is False  # a switch (`is`: 0 is a default to show)
            or action.default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def parser(prog, description=None, **kwargs):
    """An `argparse.ArgumentParser` for `prog` (e.g. `python -m trainers.meta`)
    with the project's `--help` layout and one-line errors."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    return one_line_errors(
        argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    )


def add_log_level_flag(parser, default="INFO"):
    """`--log-level` (any case); `debug` also shows tracebacks and TensorFlow's logs."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help="Logging level; DEBUG also prints the traceback of a failure "
        "instead of a one-line error, and TensorFlow's own logs.",
    )


def configure_logging(level):
    """The one logging set-up of a command line: `LOG_FORMAT` at `level`.

    Below DEBUG, TensorFlow's C++ logs are silenced for this process and its
    children (`TF_CPP_MIN_LOG_LEVEL=3`, unless the environment sets it).
    """
    level = level.upper()
    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger().setLevel(level)
    if level != "DEBUG":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.getLogger("absl").setLevel(
            max(logging.WARNING, logging.getLevelName(level))
        )


def import_tensorflow():
    """Imports TensorFlow; unless `TF_CPP_MIN_LOG_LEVEL` is 0 or unset, the lines
    its native libraries write to stderr while loading are dropped.

    Those lines (absl's "All log messages before absl::InitializeLog()",
    oneDNN and CUDA notices) are printed before absl reads any log level, so
    the environment variable alone cannot silence them. If the import fails,
    they are replayed to stderr.
    """
    if (
        "tensorflow" in sys.modules
        or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0"
    ):
        import tensorflow
    else:
        with _native_stderr_captured():
            import tensorflow
    return tensorflow


@contextlib.contextmanager
def _native_stderr_captured():
    """Redirects file descriptor 2 to a temporary file; replays it on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class BadInput(SystemExit):
    """Problems found in the input: their lines were printed; exit code 2."""

    def __init__(self, problems):
        super().__init__(EXIT_BAD_INPUT)
        self.problems = list(problems)


def error(prog, message, stream=None):
    """Prints `PROG: error: MESSAGE` as one line (whitespace runs collapsed)."""
    stream = stream or sys.stderr
    text = " ".join(str(message).split())
    print(f"{program_name(prog)}: error: {text}", file=stream)
    stream.flush()


def fail(prog, problems, stream=None):
    """Prints `PROG: error: PROBLEM` per problem and raises `BadInput` (exit 2)."""
    for problem in problems:
        error(prog, problem, stream)
    raise BadInput(problems)


def one_line_errors(parser):
    """Makes argparse's errors one line (`PROG: error: …; see --help`), exit 2."""

    def error(message):
        fail(parser.prog, [f"{message} (see --help)"])

    parser.error = error
    return parser


def install_excepthook(prog, debug):
    """An uncaught exception in a `__main__` run becomes one line, exit 1.

    Only affects the process's top level (not in-process callers such as
    tests, which see the exception itself). With `debug` the traceback is
    printed as usual.
    """
    name = program_name(prog)

    def hook(kind, value, tb):
        cleanup_created_dir()
        if debug or issubclass(kind, KeyboardInterrupt):
            traceback.print_exception(kind, value, tb)
        else:
            text = " ".join(str(value).split()) or "(no message)"
            print(
                f"{name}: error: {kind.__name__}: {text} "
                "(rerun with --log-level debug for the traceback)",
                file=sys.stderr,
            )
        sys.stderr.flush()  # then Python exits with status 1 (EXIT_ERROR)

    sys.excepthook = hook


# ---- progress of long work -------------------------------------------------
class Progress:
    """Progress of a loop of `total` units (steps, meta steps) from `start`.

    On a terminal: Keras's progress bar. Otherwise (output redirected to a
    file or a pipe, where a bar's `\\r`, `\\b` and colours are garbage) one
    plain log line at INFO every `every_seconds` and at the end:

        english: step 40/937 (4%), loss 1.0932; 2.10 s/step, ETA 31m 24s

    `update(now, values)` takes the unit count reached and `[(key, float)]`;
    the seconds per unit count only the units done since `start`.
    """

    def __init__(
        self,
        name,
        total,
        unit="step",
        start=0,
        *,
        stream=None,
        log=None,
        every_seconds=30.0,
        clock=time.monotonic,
    ):
        self.name, self.total, self.unit, self.start = name, total, unit, start
        self.log = log or logging.getLogger("keras_metaopt.progress")
        self.every_seconds, self.clock = every_seconds, clock
        self.began = self.last = clock()
        stream = stream or sys.stdout
        self.bar = None
        if stream.isatty():
            import keras  # only a terminal gets Keras's bar

            self.bar = keras.utils.Progbar(total, unit_name=unit)
            self.bar.update(start)

    def update(self, now, values=()):
        values = list(values)
        if self.bar is not None:
            self.bar.update(now, values=values)
            return
        time_now = self.clock()
        if now < self.total and time_now - self.last < self.every_seconds:
            return
        self.last = time_now
        self.log.info("%s", self.line(now, values, time_now))

    def line(self, now, values, time_now):
        """The plain line for unit count `now` at clock `time_now`."""
        text = f"{self.name}: {self.unit} {now}/{self.total}"
        text += f" ({100 * now // max(self.total, 1)}%)"
        text += "".join(f", {key} {value:.4f}" for key, value in values)
        done = now - self.start
        if done > 0:
            per_unit = (time_now - self.began) / done
            text += f"; {per_unit:.2f} s/{self.unit}"
            if now < self.total:
                text += f", ETA {_duration(per_unit * (self.total - now))}"
        return text


def _duration(seconds):
    """`1h 02m`, `31m 24s` or `7s`."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


# ---- run directories created by this process -------------------------------
_created = []


def created_dir(path, artifacts):
    """Records a directory this process created, and what makes it worth keeping.

    If the process then fails before any of `artifacts` (glob patterns under
    it) exists, `cleanup_created_dir` removes the directory: a failed start
    leaves no empty run directory behind.
    """
    _created.append((pathlib.Path(path), tuple(artifacts)))


def cleanup_created_dir():
    while _created:
        path, artifacts = _created.pop()
        if path.is_dir() and not any(any(path.glob(a)) for a in artifacts):
            shutil.rmtree(path, ignore_errors=True)


def forget_created_dirs():
    _created.clear()


def resume_command(prog, argv):
    """The command line that resumes a run started with `argv`: the same flags
    without `--overwrite` (which would delete what the run has done)."""
    return f"{prog} {shlex.join(x for x in argv if x != '--overwrite')}".strip()


# ---- stopping on SIGINT / SIGTERM ------------------------------------------
class Interrupted(SystemExit):
    """Raised after a SIGINT/SIGTERM: exit code 128 + signal number."""

    def __init__(self, signum):
        super().__init__(128 + signum)
        self.signum = signum


class StopRequest:
    """Turns SIGINT/SIGTERM into a request to stop at the next step boundary.

    While no training loop runs (`training` is False) a signal stops the
    process at once (nothing unsaved is lost). During training the first
    signal only sets `requested`; the loop calls `check(...)`, which writes
    a checkpoint and raises `Interrupted`. A second signal stops at once.
    """

    def __init__(self, prog, argv):
        self.name = program_name(prog)
        self.command = resume_command(prog, argv)
        self.signum = None
        self.training = False
        self.previous = {}

    def install(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                return self
        return self

    def uninstall(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum, frame):
        first = self.signum is None
        self.signum = signum
        if self.training and first:
            logging.getLogger("keras_metaopt.trainers").warning(
                "%s received: stopping at the next step boundary",
                signal.Signals(signum).name,
            )
            return
        self._exit(signum, "stopped before its next checkpoint")

    @property
    def requested(self):
        return self.signum is not None

    def check(self, where, save):
        """At a step boundary: if a stop was requested, `save()` and exit."""
        if self.signum is None:
            return
        save()
        self._exit(self.signum, f"checkpoint written at {where}")

    def _exit(self, signum, what):
        self.uninstall()
        print(
            f"{self.name}: interrupted by {signal.Signals(signum).name}, {what}; "
            f"resume with the same command: {self.command}",
            file=sys.stderr,
        )
        sys.stderr.flush()
        raise Interrupted(signum)


_stop = None


def install_stop(prog, argv):
    """Installs the SIGINT/SIGTERM handlers of a command-line run."""
    global _stop
    if _stop is not None:
        _stop.uninstall()
    _stop = StopRequest(prog, argv).install()
    return _stop


def set_training(training):
    """Marks whether a training loop (with step boundaries) is running."""
    if _stop is not None:
        _stop.training = training


def stop_point(where, save):
    """A step boundary: after a SIGINT/SIGTERM, `save()` and exit 130/143."""
    if _stop is not None:
        _stop.check(where, save)
