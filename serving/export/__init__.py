"""Export: a trainer's run directory → a TensorFlow Serving SavedModel (`python -m serving.export`)."""
