"""Adam's step as a pure function, the one the exact meta-gradient
differentiates (`exact_meta_gradient`) and the meta-optimizer runs when its
step must be differentiable (`MetaOptimizer`), and the check that a base
optimizer is one whose step this is.

`adam_step(..., inside_root=False)` is `keras.optimizers.Adam.update_step`'s
arithmetic op for op (tests/keras_metaopt/test_exact_meta_gradient.py checks it bit for bit);
`inside_root=True` puts ε inside the square root, so that the derivative stays
finite where v̂ ≈ 0.
"""

import keras
import tensorflow as tf


def adam_step(gradient, m, v, local_step, lr, beta_1, beta_2, epsilon, inside_root):
    """One Adam step: returns (m', v', Δ) with θ' = θ − Δ.

    With `inside_root=False` this is `keras.optimizers.Adam.update_step`'s
    arithmetic, op for op; `local_step` is `iterations + 1` in the variable's
    dtype and `lr` the learning rate.
    """
    dtype = m.dtype
    _, alpha, m, v = _moments(gradient, m, v, local_step, lr, beta_1, beta_2)
    if inside_root:
        denominator = tf.sqrt(v + tf.cast(epsilon, dtype) ** 2)
    else:
        denominator = _sqrt_zero_grad_at_zero(v) + epsilon
    return m, v, (m * alpha) / denominator


def adam_step_vjp(
    gradient,
    m,
    v,
    local_step,
    lr,
    beta_1,
    beta_2,
    epsilon,
    inside_root,
    delta_bar,
    m_out_bar,
    v_out_bar,
):
    """`adam_step`'s vector-Jacobian product in closed form, and its Δ.

    Given the adjoints of its outputs (m̄', v̄', Δ̄), returns (ḡ, m̄, v̄, Δ): the
    adjoints of its inputs (gradient, m, v) and the step itself. Elementwise
    and without a tape, so that nothing of the forward step is kept beyond
    the expression; the same derivative as differentiating `adam_step`
    (tests/keras_metaopt/test_exact_meta_gradient.py), including 0 for √v at
    v = 0 when `inside_root=False`.
    """
    dtype = m.dtype
    gradient, alpha, m_new, v_new = _moments(
        gradient, m, v, local_step, lr, beta_1, beta_2
    )
    if inside_root:
        root = tf.sqrt(v_new + tf.cast(epsilon, dtype) ** 2)
        denominator = root
        root_bar_per_v = 0.5 / root  # d√(v + ε²)/dv
    else:
        root = tf.sqrt(v_new)
        denominator = root + epsilon
        safe = tf.where(v_new > 0, root, tf.ones_like(root))
        root_bar_per_v = tf.where(v_new > 0, 0.5 / safe, tf.zeros_like(root))
    delta = (m_new * alpha) / denominator
    # Δ = m'·α / D: dΔ/dm' = α / D, dΔ/dD = −Δ / D.
    m_new_bar = m_out_bar + delta_bar * alpha / denominator
    v_new_bar = v_out_bar - delta_bar * delta / denominator * root_bar_per_v
    gradient_bar = m_new_bar * (1 - beta_1) + v_new_bar * (1 - beta_2) * 2 * gradient
    return (
        gradient_bar,
        m_new_bar * (1 - (1 - beta_1)),
        v_new_bar * (1 - (1 - beta_2)),
        delta,
    )


def _moments(gradient, m, v, local_step, lr, beta_1, beta_2):
    """(gradient, α, m', v') of an Adam step, in m's dtype, as Keras computes them."""
    dtype = m.dtype
    lr = tf.cast(lr, dtype)
    gradient = tf.cast(gradient, dtype)
    beta_1_power = tf.pow(tf.cast(beta_1, dtype), local_step)
    beta_2_power = tf.pow(tf.cast(beta_2, dtype), local_step)
    alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    m = m + (gradient - m) * (1 - beta_1)
    v = v + (tf.square(gradient) - v) * (1 - beta_2)
    return gradient, alpha, m, v


@tf.custom_gradient
def _sqrt_zero_grad_at_zero(x):
    y = tf.sqrt(x)

    def grad(dy):
        safe = tf.where(x > 0, y, tf.ones_like(y))
        return tf.where(x > 0, dy * 0.5 / safe, tf.zeros_like(dy))

    return y, grad


def check_base_optimizer(base):
    """Raises ValueError unless the exact mode can differentiate `base`'s step."""
    if type(base) not in (keras.optimizers.Adam, keras.optimizers.AdamW):
        raise ValueError(
            "meta_gradient='exact' differentiates Adam's step: the base optimizer "
            f"must be keras.optimizers.Adam or AdamW; got {type(base).__name__}. "
            "Use meta_gradient='first_order' for other optimizers."
        )
    if base.amsgrad:
        raise ValueError("meta_gradient='exact' does not support amsgrad=True.")
    for attr in ("clipnorm", "clipvalue", "global_clipnorm"):
        if getattr(base, attr, None) is not None:
            raise ValueError(
                f"meta_gradient='exact' does not support `{attr}` on the base "
                "optimizer (clipping is not differentiated)."
            )


def adam_slots(base):
    """`(momentums, velocities)` of a built Keras Adam/AdamW: its slot
    variables, one per trained variable, in build order.

    Keras has no public accessor for them; this is the one place that reads
    the private lists `keras/optimizers/adam.py` builds (`_momentums`,
    `_velocities`), so a change there breaks here only.
    """
    return base._momentums, base._velocities
