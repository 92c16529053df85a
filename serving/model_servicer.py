"""TF Serving's ModelService (GetModelStatus) over gRPC."""

import logging

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
)

from serving.model_manager import ModelManager
from serving.request_error import RequestError

log = logging.getLogger(__name__)

_STATES = get_model_status_pb2.ModelVersionStatus.State
_UNKNOWN = 2  # tensorflow.error.Code.UNKNOWN


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """Reports version states (LOADING, AVAILABLE, UNLOADING, END) per model.

    Example:
        >>> model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ...     ModelServicer(manager), server)
    """

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802  (gRPC method name)
        try:
            statuses = self.manager.statuses(request.model_spec)
        except RequestError as err:
            context.abort(err.code, str(err))
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state, error in statuses:
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = _STATES.Value(state)
            if error:
                entry.status.error_code = _UNKNOWN
                entry.status.error_message = error
        return response

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "reloading the model config is not supported; restart the server",
        )
