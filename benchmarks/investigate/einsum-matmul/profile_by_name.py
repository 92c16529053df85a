"""`benchmarks.profile_ops --pass gradient`, op time summed per op *name*
(layer index removed) instead of per op type, to see which layer an op type's
time belongs to.

    PYTHONPATH=. python benchmarks/investigate/einsum-matmul/profile_by_name.py mixed_bfloat16
"""

import collections
import glob
import re
import sys

from benchmarks import profile_ops
from keras_metaopt.models import load_classifier
from trainers.process import set_precision
from trainers.run import freeze_groups

policy = sys.argv[1]
set_precision(policy)


def op_times(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op = name.rsplit(":", 1)[-1]
                if ":" in name and op.isidentifier() and op not in profile_ops.EXECUTOR:
                    scope = re.sub(r"_\d+", "", name.rsplit(":", 1)[0])
                    scope = re.sub(r"transformer_layer\w*", "L", scope)
                    scope = "/".join(scope.split("/")[-4:])
                    times[(op, scope)] += event.duration_ps / 1e12
    return times


profile_ops.op_times = op_times
classifier = load_classifier(
    "presets/multilingual_e5_small", num_classes=3, activation=None, dtype=policy
)
freeze_groups(classifier, ("embeddings",))


class Shape:
    batch_size = 32
    length = 48


wall, times = profile_ops.profile(
    classifier, profile_ops._inputs(classifier, Shape), 3, True
)
print(policy, wall)
for (op, scope), seconds in sorted(times.items(), key=lambda kv: -kv[1])[:45]:
    print(f"{seconds:.4f} {op:22s} {scope}")
