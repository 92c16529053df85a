"""How a layer group's rate λ is parametrised by its meta-parameter φ.

| name | λ(φ) | range of λ | φ = 0 gives |
|---|---|---|---|
| `sigmoid` (the paper's) | σ(φ) | (0, 1) | 0.5 |
| `scaled-sigmoid` | 2·σ(φ) | (0, 2) | 1 |
| `exp` | exp(φ), φ ≤ log 4 | (0, 4] | 1 |

`sigmoid` can only slow a layer down. The other two let meta-training raise a
layer's step above the base optimizer's, and start (φ = 0) exactly at plain
fine-tuning. `exp` is unbounded by itself, so φ is projected onto
φ ≤ log(MAX_RATE["exp"]) after every φ update (λ ≤ 4).

Example:

>>> import numpy as np
>>> float(rate(np.float32(0.0), "scaled-sigmoid"))
1.0
>>> round(phi_of_rate(2.0, "exp"), 6)
0.693147
"""

import math

RATE_PARAMS = ("sigmoid", "scaled-sigmoid", "exp")
MAX_RATE = {"sigmoid": 1.0, "scaled-sigmoid": 2.0, "exp": 4.0}
FORMULA = {"sigmoid": "sigmoid(φ)", "scaled-sigmoid": "2·sigmoid(φ)", "exp": "exp(φ)"}


def check(param):
    """Raises ValueError unless `param` is one of `RATE_PARAMS`."""
    if param not in RATE_PARAMS:
        raise ValueError(f"rates_param must be one of {RATE_PARAMS}; got {param!r}.")
    return param


def rate(phi, param):
    """λ(φ), elementwise, differentiable."""
    from keras import ops  # here, so that the command lines read RATE_PARAMS fast

    if param == "sigmoid":
        return ops.sigmoid(phi)
    if param == "scaled-sigmoid":
        return 2.0 * ops.sigmoid(phi)
    return ops.exp(phi)


def rate_derivative(phi, param):
    """dλ/dφ, elementwise (the closed form used by the first-order meta-gradient)."""
    from keras import ops

    if param == "exp":
        return ops.exp(phi)
    s = ops.sigmoid(phi)
    scale = 2.0 if param == "scaled-sigmoid" else 1.0
    return scale * s * (1.0 - s)


def max_phi(param):
    """The largest φ allowed (only `exp` has one), or None."""
    return math.log(MAX_RATE["exp"]) if param == "exp" else None


def phi_of_rate(value, param):
    """The φ giving rate `value` (±inf at the open ends of the sigmoid ranges)."""
    value = float(value)
    top = MAX_RATE[param]
    if not 0.0 <= value <= top:
        raise ValueError(
            f"rate {value!r} is outside [0, {top:g}], the range of "
            f"rates_param='{param}'."
        )
    if value == 0.0:
        return -math.inf
    if param == "exp":
        return math.log(value)
    if value == top:
        return math.inf
    p = value / top
    return math.log(p / (1.0 - p))
