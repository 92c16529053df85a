"""How every command line of the project fails and stops.

- Bad input: one line per problem on stderr, `PROG: error: …`, exit 2
  (`fail`); argparse's own errors use the same format (`one_line_errors`).
- An unexpected exception: one line `PROG: error: Type: message`, exit 1;
  `--log-level debug` shows the traceback instead (`install_excepthook`).
- SIGINT / SIGTERM during training: the trainer stops at the next step
  boundary, writes a checkpoint and exits 130 / 143 with one line saying how
  to resume (`StopRequest`, `Interrupted`).
"""

import logging
import pathlib
import shlex
import shutil
import signal
import sys
import traceback

from serving.log_level import LEVELS as LOG_LEVELS

EXIT_BAD_INPUT = 2
EXIT_ERROR = 1


def program_name(prog):
    """`trainers.meta` from argparse's prog `python -m trainers.meta`."""
    return prog.split()[-1]


def add_log_level_flag(parser, default="INFO"):
    """`--log-level` (any case); `debug` also shows tracebacks of failures."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help="Logging level (default: %(default)s); DEBUG also prints the "
        "traceback of a failure instead of a one-line error.",
    )


class BadInput(SystemExit):
    """Problems found in the input: their lines were printed; exit code 2."""

    def __init__(self, problems):
        super().__init__(EXIT_BAD_INPUT)
        self.problems = list(problems)


def fail(prog, problems, stream=None):
    """Prints `PROG: error: PROBLEM` per problem and raises `BadInput` (exit 2)."""
    stream = stream or sys.stderr
    name = program_name(prog)
    for problem in problems:
        print(f"{name}: error: {problem}", file=stream)
    stream.flush()
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
        self.command = f"{prog} {shlex.join(argv)}".strip()
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
