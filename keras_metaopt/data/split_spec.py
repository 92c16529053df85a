"""TFDS-style split specs: `dev`, `dev[:1245]`, `dev[1245:]`, `train[:10%]`."""

import dataclasses
import re

_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?:\[(?P<selector>[^\[\]]*)\])?$")
_BOUND_RE = re.compile(r"^(?P<value>[+-]?\d+(?:\.\d+)?)(?P<percent>%)?$")
_FORMAT_HELP = (
    "expected NAME or NAME[START:STOP], where START and STOP are optional "
    "row indices (negative counts from the end) or percentages, e.g. 'dev', "
    "'dev[:1245]', 'dev[1245:]', 'dev[10:20]', 'train[:10%]', 'train[-5%:]'"
)


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """A split name and an optional row range, as in TFDS split strings.

    Bounds are absolute row indices (negative ones count from the end) or, with
    `percent=True`, percentages of the split's size, rounded to the closest row
    as TFDS does. `dev[:N]` and `dev[N:]` (or `dev[:P%]` and `dev[P%:]`)
    always partition the split.

    Usage:
        >>> spec = SplitSpec.parse("dev[1245:]")
        >>> spec.name, spec.bounds(2490)
        ('dev', (1245, 2490))
        >>> SplitSpec.parse("train[:10%]").bounds(15001)
        (0, 1500)
    """

    name: str
    start: float | None = None
    stop: float | None = None
    percent: bool = False

    @classmethod
    def parse(cls, spec):
        """Parses `NAME` or `NAME[START:STOP]`; raises ValueError if malformed."""
        if isinstance(spec, SplitSpec):
            return spec
        if not isinstance(spec, str):
            raise ValueError(f"split spec must be a string, got {spec!r}")
        match = _SPEC_RE.match(spec.strip())
        if not match:
            raise ValueError(f"malformed split spec {spec!r}: {_FORMAT_HELP}")
        selector = match["selector"]
        if selector is None:
            return cls(match["name"])
        parts = "".join(selector.split()).split(":")
        if len(parts) != 2:
            what = "a single index" if len(parts) == 1 else "a step"
            raise ValueError(
                f"malformed split spec {spec!r}: {what} is not supported; "
                f"{_FORMAT_HELP}"
            )
        bounds, units = [], set()
        for part in parts:
            if not part:
                bounds.append(None)
                continue
            bound = _BOUND_RE.match(part)
            if not bound:
                raise ValueError(
                    f"malformed split spec {spec!r}: bad bound {part!r}; {_FORMAT_HELP}"
                )
            is_percent = bool(bound["percent"])
            units.add(is_percent)
            text = bound["value"]
            if is_percent:
                value = float(text)
                if abs(value) > 100:
                    raise ValueError(
                        f"malformed split spec {spec!r}: percentage {part!r} "
                        "is outside [-100%, 100%]"
                    )
            elif "." in text:
                raise ValueError(
                    f"malformed split spec {spec!r}: row index {part!r} must "
                    "be an integer (add '%' for a percentage)"
                )
            else:
                value = int(text)
            bounds.append(value)
        if len(units) > 1:
            raise ValueError(
                f"malformed split spec {spec!r}: mixes a row index and a "
                "percentage; use one unit for both bounds"
            )
        return cls(match["name"], bounds[0], bounds[1], percent=units == {True})

    def bounds(self, num_rows):
        """The `(start, stop)` row range of this spec in a split of `num_rows`."""

        def absolute(bound, default):
            if bound is None:
                return default
            value = int(round(bound * num_rows / 100.0)) if self.percent else bound
            if abs(value) > num_rows:
                raise ValueError(
                    f"split spec '{self}' is out of range for split "
                    f"'{self.name}' with {num_rows} rows"
                )
            return value + num_rows if value < 0 else value

        start, stop = absolute(self.start, 0), absolute(self.stop, num_rows)
        if start > stop:
            raise ValueError(
                f"split spec '{self}' selects rows {start}:{stop} of "
                f"'{self.name}' ({num_rows} rows): start is after stop"
            )
        return start, stop

    @property
    def is_full(self):
        """True when the spec selects the whole split."""
        return self.start is None and self.stop is None

    def __str__(self):
        if self.is_full:
            return self.name
        unit = "%" if self.percent else ""
        start = "" if self.start is None else f"{self.start:g}{unit}"
        stop = "" if self.stop is None else f"{self.stop:g}{unit}"
        return f"{self.name}[{start}:{stop}]"


def parse_split(spec):
    """Parses a TFDS-style split spec into a `SplitSpec` (see there)."""
    return SplitSpec.parse(spec)
