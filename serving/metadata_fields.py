"""GetModelMetadata field names, shared by the server, the REST API and clients."""

# TF Serving's only metadata field: the SavedModel's SignatureDefMap.
SIGNATURE_DEF_FIELD = "signature_def"
# Not a TF Serving field: this server's request limits, as a google.protobuf.Struct
# ({"max_request_batch_size": 256, "max_string_bytes": 10000}). TF Serving
# answers INVALID_ARGUMENT for it, so clients fall back to their own batch size.
REQUEST_LIMITS_FIELD = "request_limits"
