"""Server-side batching settings, readable from TF Serving's batching.config."""

import dataclasses
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

_WRAPPED = re.compile(r"(\w+)\s*\{\s*value\s*:\s*(-?\d+)\s*\}")
_PLAIN = re.compile(r"(\w+)\s*:\s*([^\s{}]+)")
_IGNORED = {"allowed_batch_sizes", "pad_variable_length_inputs", "thread_pool_name"}


@dataclasses.dataclass
class BatchingConfig:
    """Batching on/off plus TF Serving's ``BatchingParameters`` that apply here.

    ``from_file`` reads the text-proto file given to
    ``tensorflow_model_server --batching_parameters_file`` (the same file this
    project ships as ``serving/server/batching.config``); fields that have no meaning
    here (``allowed_batch_sizes``, ``pad_variable_length_inputs``) are ignored
    with a log line.

    Example:
        >>> BatchingConfig.from_text("max_batch_size { value: 16 }").max_batch_size
        16
    """

    enabled: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 0
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> "BatchingConfig":
        """Parse the text-proto body of a batching parameters file."""
        text = re.sub(r"#.*", "", text)
        values = {}
        for key, value in _WRAPPED.findall(text):
            values[key] = int(value)
        rest = _WRAPPED.sub("", text)
        for key, _ in _PLAIN.findall(rest):
            if key in _IGNORED:
                log.info("%s: %s has no effect here; ignored", source, key)
                continue
            raise ValueError(f"{source}: unsupported field {key!r}")
        fields = {f.name for f in dataclasses.fields(cls)} - {"enabled"}
        unknown = set(values) - fields - _IGNORED
        if unknown:
            raise ValueError(
                f"{source}: unsupported field(s) {', '.join(sorted(unknown))}"
            )
        config = cls(**{k: v for k, v in values.items() if k in fields})
        config.validate()
        return config

    @classmethod
    def from_file(cls, path) -> "BatchingConfig":
        """Read a ``batching.config`` text-proto file."""
        path = Path(path)
        return cls.from_text(path.read_text(encoding="utf-8"), str(path))

    def validate(self) -> None:
        """Raise ValueError for settings that cannot work."""
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0")
        if self.num_batch_threads < 1:
            raise ValueError("num_batch_threads must be >= 1")
        if self.max_enqueued_batches < 1:
            raise ValueError("max_enqueued_batches must be >= 1")
