"""The error raised when an export does not reproduce the in-memory model."""


class ExportError(RuntimeError):
    """The export was written but failed its check against the in-memory model.

    Example:
        >>> raise ExportError("serving_default: probabilities differ by 0.01")
        Traceback (most recent call last):
        ...
        serving.export.export_error.ExportError: serving_default: probabilities differ by 0.01
    """
