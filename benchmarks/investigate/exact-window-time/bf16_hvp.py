"""Would the exact window's HVPs be cheaper in bfloat16, and how far off?

One micro-batch's Hessian-vector product (`ExactMetaGradient._add_micro_batch_hvp`,
8 of 32 rows × 64 tokens) on the e5-small shape (random weights, embeddings
frozen), computed by the float32 classifier and by the same classifier built
under `mixed_bfloat16` (float32 weights, bfloat16 compute), with the same
state, batch and adjoint (ḡ from a held-out gradient). Prints the relative
error of the bf16 product and both times (alternating calls, median of 5).

    PYTHONPATH=. nice python benchmarks/investigate/exact-window-time/bf16_hvp.py [LAYERS] [DROPOUT]

DROPOUT 0 removes dropout from both (the bf16 model draws its masks in
bfloat16, so with dropout the two products are of different functions).
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.encoder_shapes import E5_SMALL, frozen_embedding_classifier, random_rows  # noqa: E402
from keras_metaopt import MetaOptimizer, MetaStep  # noqa: E402

LAYERS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
DROPOUT = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1


def build():
    keras.utils.set_random_seed(0)
    shape = dict(E5_SMALL, num_layers=LAYERS, dropout=DROPOUT)
    return frozen_embedding_classifier(**shape)


model = build()
keras.config.set_dtype_policy("mixed_bfloat16")
model_bf16 = build()
keras.config.set_dtype_policy("float32")
B, S = 32, 64
features, labels = random_rows(B, S, E5_SMALL["vocabulary_size"])
batch = (tf.nest.map_structure(tf.constant, features), tf.constant(labels))
optimizer = MetaOptimizer(keras.optimizers.Adam(2e-5), meta_gradient="exact")
step = MetaStep(
    model,
    optimizer,
    meta_interval=2,
    offload_dir=tempfile.mkdtemp(),
    hvp_micro_batches=4,
)
data = tf.data.Dataset.from_tensors((features, labels)).repeat()
step(iter(data), iter(data))  # builds everything
window = step._window
compiled = window._compiled_steps()
phi = tf.identity(optimizer.phi.value)
state = compiled["read"]()
_, _, grads = compiled["forward"](state, batch, phi)
_, adjoints, _ = compiled["heldout"](state, batch)
_, grads_bar, _ = compiled["update_adjoints"](state, batch, phi, adjoints, grads)
args = (state, batch, grads_bar, tf.constant(1), [tf.zeros_like(g) for g in grads])
float32_hvp = tf.function(window._add_micro_batch_hvp)
exact = float32_hvp(*args)[0]
window.model = model_bf16  # traced now: the bf16 classifier, the same θ
bf16_hvp = tf.function(window._add_micro_batch_hvp)
approx = bf16_hvp(*args)[0]
window.model = model


def flat(xs):
    return tf.concat([tf.reshape(tf.cast(x, tf.float32), [-1]) for x in xs], 0)


a, b = flat(exact), flat(approx)
error = float(tf.norm(a - b) / tf.norm(a))
cosine = float(tf.reduce_sum(a * b) / tf.norm(a) / tf.norm(b))
print(
    f"{LAYERS} layers, dropout {DROPOUT}: bf16 HVP relative error {error:.3f}, cosine {cosine:.3f}"
)
times = {"float32": [], "bfloat16": []}
for _ in range(5):
    for name, fn in (("float32", float32_hvp), ("bfloat16", bf16_hvp)):
        start = time.perf_counter()
        float(fn(*args)[1])
        times[name].append(time.perf_counter() - start)
for name, t in times.items():
    print(f"{name:9} {sorted(t)[2]:.3f} s per call (median of 5)")
