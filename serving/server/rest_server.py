"""The HTTP side of the REST API: Werkzeug's threaded WSGI server around a
`RestApi`, started and stopped with the gRPC server."""

import logging
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from serving.server.rest_api import RestApi

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler with the access log at DEBUG instead of INFO."""

    def log_request(self, code="-", size="-"):
        log.debug('"%s" %s %s', self.requestline, code, size)

    def log(self, type, message, *args):  # noqa: A002  (Werkzeug's signature)
        getattr(log, "debug" if type == "info" else type)(message, *args)


class RestServer:
    """Serves a :class:`RestApi` on ``host:port`` in a background thread.

    Usage (with the servicers of a ``ModelManager``; starts a server):

        rest = RestServer(RestApi(predictions, models), port=0)
        port = rest.start()
        rest.stop(grace=10)
    """

    def __init__(self, app: RestApi, host="127.0.0.1", port=8501, ssl_context=None):
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._server = None
        self._thread = None

    def start(self) -> int:
        """Start listening; returns the bound port."""
        try:
            server = make_server(
                self.host,
                self.port,
                self.app,
                threaded=True,
                request_handler=_QuietHandler,
                ssl_context=self.ssl_context,
            )
        except (OSError, SystemExit) as err:  # Werkzeug exits on a busy port
            raise OSError(
                f"cannot listen on {self.host}:{self.port} for the REST API "
                f"({err}); pick another --rest-api-port (0 turns REST off)"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="rest", daemon=True
        )
        self._thread.start()
        return server.server_port

    def stop(self, grace: float) -> bool:
        """Wait up to ``grace`` s for in-flight requests, then close the port.

        Call after the model manager drains (new requests get 503 meanwhile).
        Returns True if no request was left running.
        """
        if self._server is None:
            return True
        idle = self.app.in_flight.wait_idle(grace)
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        return idle
