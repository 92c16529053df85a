"""The `--log-level` flag every serving command line shares."""

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def add_log_level_flag(parser, default="INFO"):
    """Adds `--log-level` to an argparse parser.

    Example:
        >>> add_log_level_flag(parser, default="WARNING")
    """
    parser.add_argument(
        "--log-level",
        default=default,
        choices=LEVELS,
        help="logging level (default: %(default)s)",
    )
