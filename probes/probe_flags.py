"""The probes' command line (no TensorFlow: `--help` and a bad flag answer at once)."""

from keras_metaopt import cli
from trainers.flags import add_common_flags, parse_args


def probe_parser(prog, doc, heldout_help):
    """The trainers' common flags plus the probe group's `--heldout` flags.

    Returns `(parser, group)`; a probe adds its own flags to `group`.
    """
    parser = cli.parser(prog, doc)
    add_common_flags(parser)
    group = parser.add_argument_group("probe")
    group.add_argument("--heldout", default="ur", help="The held-out source language.")
    group.add_argument("--heldout-examples", type=int, default=320, help=heldout_help)
    return parser, group


def parse_probe_args(parser, argv, check=None):
    """Parses and checks a probe's command line (the trainers' checks, then
    `--init-from`, then `check(args)`: a one-line problem or None); on bad
    input prints `PROG: error: …` and exits 2 before any model is loaded."""
    args = parse_args(parser, argv)
    problems = []
    if not args.init_from:
        problems.append("--init-from: needed (a run with a stage-1 English model)")
    problem = check(args) if check else None
    problems += [problem] if problem else []
    if problems:
        cli.fail(parser.prog, problems)
    return args
