"""Client: predict, metadata and status over gRPC or REST (`python -m serving.client`); imports no TensorFlow for REST."""
