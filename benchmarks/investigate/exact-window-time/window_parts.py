"""Time the parts of one exact window (e5-small shape, 32 × 64, L = 15, k = 1 in files).

    PYTHONPATH=. python benchmarks/investigate/exact-window-time/window_parts.py N [L] [LAYERS]

N: --hvp-micro-batches. With SYNC_IO=1 each state file is written before `put`
returns and read when `pop` is called (the A/B of the read-ahead, removed in
dff3557: at cc3ddee, without SYNC_IO, `pop` read ahead). Every timed call's
outputs are copied to numpy, so the window runs longer than in
`benchmarks.bench_meta_step --breakdown`, which does not.
"""

import collections
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import tensorflow as tf

from benchmarks.encoder_shapes import (
    E5_SMALL,
    frozen_embedding_classifier,
    random_rows,
    repeated_batches,
)
from keras_metaopt import MetaOptimizer, MetaStep, state_file
from keras_metaopt import exact_meta_gradient as emg

if os.environ.get("SYNC_IO"):
    _put = state_file.StateFile.put

    def sync_put(self, key, state):
        _put(self, key, state)
        self.wait()

    state_file.StateFile.put = sync_put
    if hasattr(state_file.StateFile, "prefetch"):  # cc3ddee: pop read ahead
        _prefetch, _pop = state_file.StateFile.prefetch, state_file.StateFile.pop

        def sync_pop(self, key):
            _prefetch(self, key)
            return _pop(self, key)

        state_file.StateFile.prefetch = lambda self, key: None
        state_file.StateFile.pop = sync_pop
N = int(sys.argv[1])
L = int(sys.argv[2]) if len(sys.argv) > 2 else 15
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 12
keras.utils.set_random_seed(0)
shape = dict(E5_SMALL, num_layers=layers)
model = frozen_embedding_classifier(**shape)
n = 4
B = 32
S = 64
data = repeated_batches(*random_rows(n * B, S, shape["vocabulary_size"]), B)
opt = MetaOptimizer(keras.optimizers.Adam(2e-5), meta_gradient="exact")
step = MetaStep(
    model,
    opt,
    meta_interval=L,
    state_every=1,
    offload_dir=tempfile.mkdtemp(),
    hvp_micro_batches=N,
)
tr, ho = iter(data), iter(data)
step(tr, ho)["heldout_loss"].numpy()
times = collections.defaultdict(float)
counts = collections.Counter()


def timed(name, fn):
    def w(*a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        tf.nest.map_structure(lambda x: x.numpy() if hasattr(x, "numpy") else x, out)
        times[name] += time.perf_counter() - t
        counts[name] += 1
        return out

    return w


ex = step._exact if hasattr(step, "_exact") else None
if ex is None:
    for v in vars(step).values():
        if isinstance(v, emg.ExactMetaGradient):
            ex = v
comp = ex._compiled_steps()
for k in list(comp):
    comp[k] = timed(k, comp[k])
state_file.StateFile.put = timed("put", state_file.StateFile.put)
state_file.StateFile.pop = timed("pop", state_file.StateFile.pop)
t0 = time.perf_counter()
r = step(tr, ho)
float(r["heldout_loss"])
total = time.perf_counter() - t0
print(
    f"sync={bool(os.environ.get('SYNC_IO'))} N={N} L={L} layers={layers} window {total:.2f} s  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
)
for k in times:
    print(
        f"  {k:18} {times[k]:8.2f} s  {counts[k]:3d} calls  {times[k] / counts[k]:.3f} s/call"
    )
