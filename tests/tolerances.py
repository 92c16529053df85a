"""How far two float32 computations of the same arithmetic may differ, and why.

Two float32 programs that compute the same function in another order (another
graph that fuses ops differently, a reduction split over other threads or
replicas, a thread pool that hands out its shards differently on a busy
machine) agree only up to rounding. A sum of n terms then differs by at most
γ·Σ|x_i|: relative to the terms, not to the result, so a comparison relative
to a result that cancels (a weight, a gradient near zero) has no bound at all.
Two values of γ are standard:

- worst case, γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (Higham, *Accuracy and Stability
  of Numerical Algorithms*, §3.1);
- probabilistic, γ̃_n(λ) = exp(λ·√n·u + n·u²/(1 − u)) − 1 ≈ λ·√n·u, which
  holds with probability ≥ 1 − 2n·exp(−λ²(1 − u)²/2) when the rounding errors
  are independent and of mean zero (Higham & Mary, SIAM J. Sci. Comput. 41(5),
  2019, Theorem 3.1). With λ = 7 and n ≤ 3072 that is ≥ 1 − 1.4e-7.

The suite uses the probabilistic bound: the worst case assumes every rounding
error has the same sign, which nothing here arranges, and it is loose enough
to hide a wrong rate.

A training trajectory is compared group by group (a layer, the head: what one
rate λ scales), by how far the two endpoints are apart against how far the
group travelled. Every gradient component of the tiny test models
(`keras_metaopt.testing`: batches of 4 to 16 rows, 12 positions, width 8 to
16) is a sum of at most n = 16·12·16 = 3072 terms. Adam's step m̂/(√v̂ + ε)
does not depend on the gradient's scale, so a relative change of the gradients
reaches the steps at most in proportion; over a few steps the differences add
rather than compound (a weight's change feeds back into later gradients only
at second order, lr × its size). So the endpoints differ by at most
steps·γ̃_n of the distance travelled, in norm over a group. Single components
can do worse (a key bias, whose true gradient is zero, moves by rounding noise
alone): that is why the comparison is a norm over a group, not elementwise.

A real defect moves an endpoint by far more: a rate λ off by 1 % changes its
group's steps by 1 % (`tests/keras_metaopt/test_exact_meta_gradient.py` checks that this
fails the same comparison by two orders of magnitude), a wrong mask or Adam
step by O(1).
"""

import math

import numpy as np

from keras_metaopt import LayerGroups

U = 2.0**-24  # float32 unit roundoff
CONFIDENCE = 7.0  # λ of the probabilistic bound: fails with probability < 1.4e-7
# The terms of one gradient component of the tiny models (see above).
TINY_MODEL_TERMS = 16 * 12 * 16


def gamma(n, confidence=CONFIDENCE):
    """Higham & Mary's γ̃_n(λ): relative (to the terms) rounding of an n-term sum."""
    return math.expm1(confidence * math.sqrt(n) * U + n * U * U / (1 - U))


def trajectory_rtol(steps, terms=TINY_MODEL_TERMS):
    """How far apart, relative to the distance travelled, two float32 runs of
    `steps` optimizer steps may end: each step's gradient is rounded
    differently by at most γ̃_terms, Adam passes that on in proportion, and
    the steps' differences add up."""
    return steps * gamma(terms)


_GROUPS = LayerGroups(frozen=())


def _group(path):
    try:
        return _GROUPS.group_of_path(path)
    except ValueError:  # not a layer's weight (a seed state, a counter)
        return path


def relative_distance(start, a, b):
    """max over groups of ‖a − b‖ / ‖a − start‖, for dicts {path: value}.

    Groups are `LayerGroups`'s (what one rate scales); other variables (seed
    states) are groups of their own. A group that did not move in `a`
    (frozen, or a seed state that did not advance) counts as infinitely far
    unless `b` equals it exactly.
    """
    gaps, travelled = {}, {}
    for path, s in start.items():
        x, y, s = (np.asarray(v, np.float64) for v in (a[path], b[path], s))
        group = _group(path)
        gaps[group] = gaps.get(group, 0.0) + float(np.sum((x - y) ** 2))
        travelled[group] = travelled.get(group, 0.0) + float(np.sum((x - s) ** 2))
    worst = 0.0
    for group, gap in gaps.items():
        if gap:
            moved = travelled[group]
            worst = max(worst, math.sqrt(gap / moved) if moved else math.inf)
    return worst


def weights_by_path(model):
    """`{path: value}` of every weight of `model` (trainable or not)."""
    return {v.path: v.numpy() for v in model.weights}


def assert_same_trajectory(start, a, b, rtol):
    """Every group of `a` and `b` within `rtol` of the distance it travelled."""
    distance = relative_distance(start, a, b)
    assert distance <= rtol, (
        f"the trajectories differ by {distance:.3g} of the distance travelled "
        f"(float32 rounding allows {rtol:.3g})"
    )
