"""A gRPC server speaking TF Serving's PredictionService and ModelService."""

import logging
import time
from concurrent import futures
from pathlib import Path

import grpc

from serving.server.model_manager import ModelManager
from serving.server.model_servicer import ModelServicer
from serving.server.prediction_servicer import PredictionServicer

log = logging.getLogger(__name__)


class ModelServer:
    """Binds the servicers to ``host:port`` (TLS when a cert and key are given),
    and TF Serving's REST API to ``host:rest_port`` when ``rest_port`` is not
    None (0: any free port), both answering from one model manager.

    Usage (needs exported versions under ``models/nli``; starts a server):

        manager = ModelManager.for_model("nli", "models/nli")
        server = ModelServer(manager, port=0, rest_port=0)
        port = server.start()
        server.bound_rest_port  # the REST port picked, e.g. 40123
        server.stop(grace=10)  # True: every request finished
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
        rest_port: int | None = None,
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
        self.rest_port = rest_port
        self.server = None
        self.rest = None
        self.predictions = None
        self.bound_port = None
        self.bound_rest_port = None

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
        predictions = PredictionServicer(self.manager)
        models = ModelServicer(self.manager)
        predictions.add_to_server(server)
        self.predictions = predictions
        models.add_to_server(server)
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
        if self.rest_port is not None:
            from serving.server.rest_api import RestApi
            from serving.server.rest_server import RestServer

            self.rest = RestServer(
                RestApi(predictions, models, max_body_bytes=self.max_message_bytes),
                host=self.host,
                port=self.rest_port,
                ssl_context=(
                    (str(self.ssl_cert), str(self.ssl_key))
                    if self.ssl_cert is not None
                    else None
                ),
            )
            try:
                self.bound_rest_port = self.rest.start()
            except OSError:
                self.rest = None
                self.server.stop(0)
                self.manager.stop()
                raise
            log.info(
                "REST API on %s://%s:%d/v1/models/",
                "https" if self.ssl_cert is not None else "http",
                self.host,
                self.bound_rest_port,
            )
        return port

    def stop(self, grace: float = 10.0) -> bool:
        """Shut down within ``grace`` seconds; True if every request finished.

        New requests get UNAVAILABLE (gRPC) / 503 (REST) at once; in-flight ones
        have until ``grace`` s to finish; after that, requests still queued for a
        batch are answered UNAVAILABLE and RPCs still running are cancelled
        (their model calls cannot be interrupted: ``python -m serving.server``
        exits anyway, see ``serving.server.run``).
        """
        deadline = time.monotonic() + grace
        log.info("shutting down: finishing in-flight requests (grace %.0fs)", grace)
        self.manager.drain()
        stopped = self.server.stop(grace) if self.server is not None else None
        clean = True
        if stopped is not None:
            stopped.wait(max(0.0, deadline - time.monotonic()))
            # gRPC cancels RPCs still running at the deadline, but their threads
            # go on computing: count them as left undone.
            clean = self.predictions.in_flight.wait_idle(0.05)
            self.server = None
        # The REST port closes last: until then new REST requests get 503 from
        # the drained manager, not a refused connection.
        if self.rest is not None:
            clean = self.rest.stop(max(0.0, deadline - time.monotonic())) and clean
            self.rest = None
        clean = (
            self.manager.stop(timeout=max(0.0, deadline - time.monotonic())) and clean
        )
        if clean:
            log.info("shutdown complete")
        else:
            log.warning(
                "shutdown complete; some requests were still running after the "
                "%.0fs grace period and were cancelled",
                grace,
            )
        return clean

    def wait(self, timeout=None) -> bool:
        """Block until the server stops (or ``timeout`` seconds pass)."""
        return self.server.wait_for_termination(timeout)
