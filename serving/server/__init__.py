"""Server: the TensorFlow Serving gRPC and REST APIs over exported models (`python -m serving.server`)."""
