"""One 12-layer micro-batch HVP call with the old mask draws (every micro-batch
drew the whole batch's masks, before a47bbf5) against the new (its own rows):
the same process, alternating calls; checks the HVPs are bit for bit equal.

    git show 526caf9:keras_metaopt/micro_batch.py > /tmp/old_micro_batch.py
    OLD_MICRO_BATCH=/tmp/old_micro_batch.py PYTHONPATH=. \
        python benchmarks/investigate/exact-window-time/rng_rows.py 12 7
"""

import importlib.util
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
import tensorflow as tf

from benchmarks.encoder_shapes import E5_SMALL, frozen_embedding_classifier, random_rows
from keras_metaopt import MetaOptimizer, MetaStep
from keras_metaopt import exact_meta_gradient as emg

spec = importlib.util.spec_from_file_location("old_mb", os.environ["OLD_MICRO_BATCH"])
old_mb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old_mb)
layers = int(sys.argv[1])
keras.utils.set_random_seed(0)
shape = dict(E5_SMALL, num_layers=layers)
model = frozen_embedding_classifier(**shape)
B, S = 32, 64
features, labels = random_rows(B, S, shape["vocabulary_size"])
batch = (tf.nest.map_structure(tf.constant, features), tf.constant(labels))
opt = MetaOptimizer(keras.optimizers.Adam(2e-5), meta_gradient="exact")
step = MetaStep(
    model,
    opt,
    meta_interval=2,
    state_every=1,
    offload_dir=__import__("tempfile").mkdtemp(),
    hvp_micro_batches=4,
)
data = tf.data.Dataset.from_tensors((features, labels)).repeat()
step(iter(data), iter(data))
ex = [v for v in vars(step).values() if isinstance(v, emg.ExactMetaGradient)][0]
comp = ex._compiled_steps()
phi = tf.identity(opt.phi.value)
state = comp["read"]()
_, loss, grads = comp["forward"](state, batch, phi)
adj = (grads, [tf.zeros_like(x) for x in grads], [tf.zeros_like(x) for x in grads])
(tb, mb, vb), gb, pb = comp["update_adjoints"](state, batch, phi, adj, grads)
new_fn = tf.function(ex._add_micro_batch_hvp)
args = (state, batch, gb, tf.constant(1), tb)
out_new = new_fn(*args)
new_sd = emg.sliced_dropout
emg.sliced_dropout = old_mb.sliced_dropout
old_fn = tf.function(ex._add_micro_batch_hvp)
out_old = old_fn(*args)
emg.sliced_dropout = new_sd
print(
    "bit-identical HVP:",
    all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(out_new[0], out_old[0])),
)
tt = {"old": [], "new": []}
for _rep in range(int(sys.argv[2])):
    for name, f in (("old", old_fn), ("new", new_fn)):
        t = time.perf_counter()
        o = f(*args)
        float(o[1])
        tt[name].append(time.perf_counter() - t)
for k, v in tt.items():
    print(k, " ".join(f"{x:.3f}" for x in v), "median", f"{sorted(v)[len(v) // 2]:.3f}")
