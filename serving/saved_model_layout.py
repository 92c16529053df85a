"""The exported SavedModel's names: signatures, their inputs and outputs, assets.

Written by the export (`serving_module`, `exporter`), read by the server
(`servable`) and the clients. Imports nothing, so that the clients stay light.
"""

PREDICT_SIGNATURE = "serving_default"
TOKEN_IDS_SIGNATURE = "predict_token_ids"
CLASSIFY_SIGNATURE = "classify"
# The SignatureDef method name TF Serving's Classify API wants (the others are
# predict signatures).
CLASSIFY_METHOD = "tensorflow/serving/classify"

TEXT_INPUTS = ("premise", "hypothesis")  # serving_default, and classify's features
CLASSIFY_INPUT = "inputs"  # classify: serialized tf.Example
PREDICT_OUTPUTS = ("probabilities", "label", "label_name")
CLIENT_OUTPUTS = ("probabilities", "label_name")  # what the clients ask for

ASSETS_EXTRA = "assets.extra"  # TF Serving's directory for files beside the graph
WARMUP_FILE = "tf_serving_warmup_requests"  # TF Serving's name for warmup records
METADATA_FILE = "keras_metaopt.json"
METADATA_FORMAT = "keras_metaopt.serving.v1"
