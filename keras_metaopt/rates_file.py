"""The rates file (`rates.json`): the one writer and the one reader.

A meta run (and a fixed-rate baseline) writes what it learned as
`{"format": RATES_FORMAT, "mode": ..., "rates_param": ..., "rates": {group: λ},
"phi": {group: φ}}`. The trainers read it back to train with the rates, the
probes to start from them, and serving to record them in an export's metadata,
all through `read_rates`, which checks every rate against its
parameterisation's range. Imports nothing heavy (no TensorFlow, no Keras).

Example:
    >>> import tempfile, os
    >>> from keras_metaopt.rates_file import read_rates, write_rates
    >>> path = os.path.join(tempfile.mkdtemp(), "rates.json")
    >>> write_rates(path, {"head": 0.5}, mode="layerwise", rates_param="sigmoid")
    >>> read_rates(path).rates
    {'head': 0.5}
"""

import dataclasses
import json
import os

from keras_metaopt import rate_param
from keras_metaopt.formats import RATES_FORMAT, RATES_JSON, write_json


@dataclasses.dataclass(frozen=True)
class Rates:
    """A rates file's contents: λ per layer group, and how they were learned."""

    rates: dict
    mode: str | None
    rates_param: str
    phi: dict | None = None


def write_rates(path, rates, mode, rates_param, phi=None):
    """Writes a rates file atomically (a temporary file renamed into place)."""
    payload = {
        "format": RATES_FORMAT,
        "mode": mode,
        "rates_param": rates_param,
        "rates": rates,
    }
    if phi is not None:
        payload["phi"] = phi
    write_json(path, payload, indent=2)


def rates_path(path):
    """`path`, or the rates file in it when `path` is a run directory."""
    return os.path.join(path, RATES_JSON) if os.path.isdir(path) else path


def read_rates(path):
    """Reads and checks a rates file; returns `Rates`. Raises ValueError
    naming the file and the problem (format, a missing or empty map, an
    unknown parameterisation, a rate outside its range)."""
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON rates file ({e}).") from e
    if not isinstance(payload, dict) or payload.get("format") != RATES_FORMAT:
        raise ValueError(f"{path}: not a rates file (expected format {RATES_FORMAT}).")
    rates = payload.get("rates")
    if not isinstance(rates, dict) or not rates:
        raise ValueError(f"{path}: 'rates' must be a non-empty {{group: rate}} map.")
    # v1 files without "rates_param" were written with the sigmoid.
    param = payload.get("rates_param", "sigmoid")
    if param not in rate_param.RATE_PARAMS:
        raise ValueError(
            f"{path}: unknown rates_param {param!r}; expected one of "
            f"{rate_param.RATE_PARAMS}."
        )
    top = rate_param.MAX_RATE[param]
    for group, rate in rates.items():
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not 0.0 <= rate <= top
        ):
            raise ValueError(
                f"{path}: rate of '{group}' must be in [0, {top:g}] "
                f"(rates_param '{param}'); got {rate!r}."
            )
    phi = payload.get("phi")
    return Rates(
        rates={str(g): float(r) for g, r in rates.items()},
        mode=payload.get("mode"),
        rates_param=param,
        phi=dict(phi) if isinstance(phi, dict) else None,
    )
