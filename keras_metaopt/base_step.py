"""How `MetaOptimizer` reads its base optimizer's step: the one contract with it.

`MetaOptimizer` never lets the base optimizer move a trained variable θ. For
each θ it asks for the step Δθ the base optimizer would take, scales it by λ
and applies `θ ← θ − λ·Δθ` itself. Δθ is read off the base optimizer's own
code rather than re-derived, in the order Keras's `Optimizer.apply` uses:

1. gradient clipping: `base._clip_gradients(grads)` (clipnorm, clipvalue,
   global_clipnorm), on all gradients at once;
2. decoupled weight decay: Keras's `Optimizer._apply_weight_decay` rule,
   `θ·wd·lr` where `base._use_weight_decay(θ)`;
3. `base.update_step(g, θ, lr)`, run with the base optimizer's `assign`,
   `assign_add` and `assign_sub` intercepted for θ only: its writes to θ
   become Δθ (an absolute `assign` replaces what came before), its writes to
   its own slots go through.

With λ = 1 this is the base optimizer's `apply`, step for step. It holds for
every class that keeps Keras's per-`apply` machinery and writes θ through
those three methods; `check_wrappable` refuses the others when the
`MetaOptimizer` is made, naming what breaks the contract:

- wrappers of other optimizers (`LossScaleOptimizer`, `MultiOptimizer`,
  `MetaOptimizer`): wrap the inner optimizer instead;
- classes that override `apply`, `_backend_update_step` or
  `_apply_weight_decay` (e.g. `Nadam`, whose `u_product` advances once per
  `apply`, and `Muon`, whose decay differs per variable): those steps would be
  skipped or replaced by Keras's rule;
- classes without an `update_step` (`keras.optimizers.Optimizer` itself);
- EMA, gradient accumulation and loss scaling on the base optimizer.

`tests/keras_metaopt/test_base_step.py` runs every class in `keras.optimizers` against this:
each either reproduces its own `apply` at λ = 1 or is refused here. The
first-order path touches the base optimizer's private API only here; the exact
mode instead recomputes Adam's step functionally from its slots
(`functional_adam.adam_step`, tested bit-identical to Keras's).
"""

import keras
import tensorflow as tf
from keras import ops

WRAPPERS = ("LossScaleOptimizer", "MultiOptimizer", "MetaOptimizer")
PER_APPLY_METHODS = ("apply", "_backend_update_step", "_apply_weight_decay")
UNSUPPORTED_FEATURES = ("use_ema", "gradient_accumulation_steps", "loss_scale_factor")
WRITES = ("assign", "assign_add", "assign_sub")


def check_wrappable(base):
    """Raises TypeError / ValueError unless `base` meets the contract above."""
    if not isinstance(base, keras.optimizers.Optimizer):
        raise TypeError(
            f"base_optimizer must be a keras.optimizers.Optimizer; "
            f"got {type(base).__name__}."
        )
    name = type(base).__name__
    if any(cls.__name__ in WRAPPERS for cls in type(base).__mro__):
        raise ValueError(
            f"MetaOptimizer cannot wrap {name}, itself a wrapper of other "
            "optimizers; wrap the inner optimizer instead."
        )
    if type(base).update_step is keras.optimizers.Optimizer.update_step:
        raise ValueError(
            f"MetaOptimizer cannot wrap {name}: it does not implement `update_step`."
        )
    for method in PER_APPLY_METHODS:
        if getattr(type(base), method) is not getattr(
            keras.optimizers.Optimizer, method
        ):
            raise ValueError(
                f"MetaOptimizer cannot wrap {name}: it overrides `{method}`, so "
                "reading its step one variable at a time would skip or change "
                "what that method does. Supported: Adam, AdamW, SGD and the "
                "other keras.optimizers listed in docs/optimizer.md."
            )
    for attr in UNSUPPORTED_FEATURES:
        if getattr(base, attr, None):
            raise ValueError(
                f"MetaOptimizer does not support `{attr}` on the base optimizer."
            )


def clip_gradients(base, grads):
    """Step 1: the base optimizer's gradient clipping."""
    return base._clip_gradients(grads)


def weight_decay_step(base, variable, learning_rate, start):
    """Step 2: the decoupled weight decay part of Δθ (None if there is none)."""
    if base.weight_decay is None or not base._use_weight_decay(variable):
        return None
    decay = ops.cast(base.weight_decay, variable.dtype)
    return start * decay * ops.cast(learning_rate, variable.dtype)


def captured_update(base, gradient, variable, learning_rate, start):
    """Step 3: runs `base.update_step`, collecting its writes to `variable`
    itself (relative to `start`, its value before the step) instead of
    applying them; returns Δθ."""
    deltas = []

    def capture(kind):
        original = getattr(base, kind)

        def write(target, value):
            if target is not variable:
                return original(target, value)
            value = ops.cast(tf.convert_to_tensor(value), variable.dtype)
            if kind == "assign_sub":
                deltas.append(value)
            elif kind == "assign_add":
                deltas.append(-value)
            else:  # An absolute write replaces everything before it.
                deltas[:] = [start - value]

        return write

    for kind in WRITES:
        setattr(base, kind, capture(kind))
    try:
        base.update_step(gradient, variable, learning_rate)
    finally:
        for kind in WRITES:
            delattr(base, kind)
    if not deltas:
        raise RuntimeError(
            f"{type(base).__name__}.update_step did not write the variable "
            "through assign/assign_add/assign_sub; it cannot be wrapped."
        )
    update = deltas[0]
    for delta in deltas[1:]:
        update = update + delta
    return update
