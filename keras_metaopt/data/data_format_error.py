"""The error raised for a malformed data file or row."""


class DataFormatError(ValueError):
    """A malformed data file or row; the message starts with `path:line`.

    `line` is 1-based, as in an editor (the header is line 1), or None when the
    problem is not tied to one line.

    Usage:
        >>> err = DataFormatError("dev.en.tsv", 7, "unknown label 'maybe'")
        >>> str(err)
        "dev.en.tsv:7: unknown label 'maybe'"
    """

    def __init__(self, path, line, reason):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.line, self.reason)
