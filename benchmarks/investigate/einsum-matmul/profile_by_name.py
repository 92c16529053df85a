"""`benchmarks.profile_ops --pass gradient`, op time summed per op *name*
(layer index removed) instead of per op type, to see which layer an op type's
time belongs to.

    PYTHONPATH=. python benchmarks/investigate/einsum-matmul/profile_by_name.py mixed_bfloat16
"""

import re
import sys

from benchmarks import profile_ops
from trainers.process import set_precision

policy = sys.argv[1]
set_precision(policy)


def by_scope(op, name):
    """The op type and its name scope, layer indices merged."""
    scope = re.sub(r"_\d+", "", name)
    scope = re.sub(r"transformer_layer\w*", "L", scope)
    return op, "/".join(scope.split("/")[-4:])


classifier = profile_ops.load_frozen("presets/multilingual_e5_small", policy)
x = profile_ops.random_batch(classifier, 32, 48)
wall, times = profile_ops.profile(classifier, x, 3, True, key=by_scope)
print(policy, wall)
for (op, scope), seconds in sorted(times.items(), key=lambda kv: -kv[1])[:45]:
    print(f"{seconds:.4f} {op:22s} {scope}")
