"""A request the server refuses, with the gRPC status code to answer it with."""

import grpc


class RequestError(Exception):
    """A client mistake (or a missing servable), carried up to the gRPC layer.

    The servicers catch it and abort the RPC with ``code`` and the message, so a bad
    request gets a status and never takes the server down.

    Example:
        >>> err = RequestError(grpc.StatusCode.NOT_FOUND, "no model 'x'")
        >>> err.code.name, str(err)
        ('NOT_FOUND', "no model 'x'")
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code

    @classmethod
    def invalid(cls, message: str) -> "RequestError":
        """An INVALID_ARGUMENT error: the request itself is malformed."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> "RequestError":
        """A NOT_FOUND error: the model, version or signature does not exist."""
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def unavailable(cls, message: str) -> "RequestError":
        """An UNAVAILABLE error: try again later (overload, shutting down)."""
        return cls(grpc.StatusCode.UNAVAILABLE, message)
