"""TF Serving's ModelService (GetModelStatus) over gRPC."""

import logging

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2

from serving.server.model_manager import ModelManager
from serving.server.prediction_servicer import parsing_handler
from serving.server.request_error import RequestError

log = logging.getLogger(__name__)

_STATES = get_model_status_pb2.ModelVersionStatus.State
_UNKNOWN = 2  # tensorflow.error.Code.UNKNOWN


class ModelServicer:
    """Reports version states (LOADING, AVAILABLE, UNLOADING, END) per model.

    ``status`` takes and returns the protos and raises :class:`RequestError`
    (the REST API calls it too).

    Usage (with a ``ModelManager`` and a ``grpc.Server``):

        ModelServicer(manager).add_to_server(server)
    """

    SERVICE = "tensorflow.serving.ModelService"

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def add_to_server(self, server) -> None:
        """Register the service's methods on a ``grpc.Server``."""
        server.add_generic_rpc_handlers(
            (
                parsing_handler(
                    self.SERVICE,
                    {
                        "GetModelStatus": (
                            self.GetModelStatus,
                            get_model_status_pb2.GetModelStatusRequest,
                            get_model_status_pb2.GetModelStatusResponse,
                        ),
                        "HandleReloadConfigRequest": (
                            self.HandleReloadConfigRequest,
                            model_management_pb2.ReloadConfigRequest,
                            model_management_pb2.ReloadConfigResponse,
                        ),
                    },
                ),
            )
        )

    def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        """Answer a GetModelStatusRequest (raises :class:`RequestError`)."""
        statuses = self.manager.statuses(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state, error in statuses:
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = _STATES.Value(state)
            entry.status.SetInParent()  # error_code OK, as TF Serving always fills it
            if error:
                entry.status.error_code = _UNKNOWN
                entry.status.error_message = error
        return response

    def GetModelStatus(self, request, context):  # noqa: N802  (gRPC method name)
        try:
            return self.status(request)
        except RequestError as err:
            context.abort(err.code, str(err))

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "reloading the model config is not supported; restart the server",
        )
