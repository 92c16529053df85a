"""A request the server refuses, with the gRPC status code to answer it with."""

import grpc

# TF Serving's mapping of status codes to HTTP codes for its REST API
# (ToHTTPStatusCode in tensorflow_serving/model_servers/http_server.cc): the one
# place this server turns a gRPC status into an HTTP status.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class RequestError(Exception):
    """A client mistake (or a missing servable), carried up to the gRPC layer.

    The servicers catch it and abort the RPC with ``code`` and the message (the
    REST API answers ``HTTP_STATUS[code]`` with ``{"error": message}``), so a bad
    request gets a status and never takes the server down.

    Example:
        >>> err = RequestError(grpc.StatusCode.NOT_FOUND, "no model 'x'")
        >>> err.code.name, str(err), err.http_status
        ('NOT_FOUND', "no model 'x'", 404)
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers this code with."""
        return HTTP_STATUS.get(self.code, 500)

    @classmethod
    def invalid(cls, message: str) -> "RequestError":
        """An INVALID_ARGUMENT error: the request itself is malformed."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> "RequestError":
        """A NOT_FOUND error: the model or version does not exist (or is not loaded)."""
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def failed_precondition(cls, message: str) -> "RequestError":
        """A FAILED_PRECONDITION error (TF Serving's code for an unknown signature)."""
        return cls(grpc.StatusCode.FAILED_PRECONDITION, message)

    @classmethod
    def unavailable(cls, message: str) -> "RequestError":
        """An UNAVAILABLE error: try again later (overload, shutting down)."""
        return cls(grpc.StatusCode.UNAVAILABLE, message)
