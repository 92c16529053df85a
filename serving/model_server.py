"""A gRPC server speaking TF Serving's PredictionService and ModelService."""

import logging
from concurrent import futures
from pathlib import Path

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.model_manager import ModelManager
from serving.model_servicer import ModelServicer
from serving.prediction_servicer import PredictionServicer

log = logging.getLogger(__name__)


class ModelServer:
    """Binds the servicers to ``host:port`` (TLS when a cert and key are given).

    Example:
        >>> manager = ModelManager.for_model("nli", "models/nli")
        >>> server = ModelServer(manager, port=0)
        >>> port = server.start()
        >>> server.stop(grace=10)
    """

    def __init__(
        self,
        manager: ModelManager,
        host: str = "127.0.0.1",
        port: int = 8500,
        max_threads: int = 32,
        ssl_cert=None,
        ssl_key=None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ):
        if (ssl_cert is None) != (ssl_key is None):
            raise ValueError("TLS needs both a certificate and a key")
        self.manager = manager
        self.host = host
        self.port = port
        self.max_threads = max_threads
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.max_message_bytes = max_message_bytes
        self.server = None
        self.bound_port = None

    def start(self) -> int:
        """Load the models, start listening; returns the bound port."""
        self.manager.start()
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.server(
            futures.ThreadPoolExecutor(self.max_threads, thread_name_prefix="grpc"),
            options=options,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.manager), server
        )
        address = f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):
            address = f"[{self.host}]:{self.port}"
        try:
            if self.ssl_cert is not None:
                credentials = grpc.ssl_server_credentials(
                    [
                        (
                            Path(self.ssl_key).read_bytes(),
                            Path(self.ssl_cert).read_bytes(),
                        )
                    ]
                )
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as err:
            self.manager.stop()
            raise OSError(f"cannot listen on {address}: {err}") from None
        server.start()
        self.server, self.bound_port = server, port
        log.info(
            "listening on %s:%d (%s)",
            self.host,
            port,
            "TLS" if self.ssl_cert is not None else "plaintext",
        )
        return port

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new RPCs, let in-flight ones finish (up to ``grace`` s), unload."""
        if self.server is not None:
            log.info("shutting down: finishing in-flight requests (grace %.0fs)", grace)
            self.server.stop(grace).wait()
            self.server = None
        self.manager.stop()
        log.info("shutdown complete")

    def wait(self, timeout=None) -> bool:
        """Block until the server stops (or ``timeout`` seconds pass)."""
        return self.server.wait_for_termination(timeout)
