"""The precisions an export can compute in (no TensorFlow: `--help` reads it)."""

# Keras dtype policies. Under "mixed_bfloat16" the layers compute in bfloat16
# while the weights stay float32 and the probabilities are float32. float16 is
# not offered: on a CPU it is slower than float32.
PRECISIONS = ("float32", "mixed_bfloat16")

# The export check's default atol per precision: the reloaded SavedModel
# against the in-memory model. In bfloat16 the two round differently where
# the export runs the batch trimmed to its longest pair (length-aware) and the
# in-memory model the fully padded one: 0.0077 on the check pairs for an
# e5-small model, as far apart as bf16 and float32 themselves (BENCHMARKS.md).
DEFAULT_ATOL = {"float32": 1e-5, "mixed_bfloat16": 0.05}

# How far a bfloat16 export's probabilities may be from the float32 model's on
# the check pairs (BENCHMARKS.md, "Serving in bfloat16").
DEFAULT_FLOAT32_ATOL = 0.05
