"""JSON <-> tensors for TF Serving's REST API (util/json_tensor.cc): request
values as numpy arrays of a signature's dtypes, outputs as JSON, Examples for
the Classify API. Errors are `RequestError`s worded as TF Serving's."""

import base64
import json

import numpy as np

from serving.server.request_error import RequestError

BASE64_KEY = "b64"
BYTES_SUFFIX = "_bytes"  # string outputs named *_bytes are sent as {"b64": ...}

_DT_STRING, _DT_BOOL = 7, 10
_NUMPY_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
}
_FLOAT_DTYPES = {1, 2}


def json_excerpt(value) -> str:
    """`value` as JSON, cut to 100 characters (for error messages)."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 100 else text[:97] + "..."


def _leaf(value, dtype: int, where: str):
    """One JSON scalar as a value of the signature's dtype."""
    if dtype == _DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict) and list(value) == [BASE64_KEY]:
            try:
                return base64.b64decode(value[BASE64_KEY], validate=True)
            except (ValueError, TypeError):
                raise RequestError.invalid(
                    f"{where}: JSON Value: {json_excerpt(value)} is not valid base64"
                ) from None
    elif dtype == _DT_BOOL:
        if isinstance(value, bool):
            return value
    elif dtype in _FLOAT_DTYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif dtype in _NUMPY_DTYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    kind = "string" if dtype == _DT_STRING else np.dtype(_NUMPY_DTYPES[dtype]).name
    raise RequestError.invalid(
        f"{where}: JSON Value: {json_excerpt(value)} is not of expected type: {kind}"
    )


def json_to_array(value, dtype: int, where: str) -> np.ndarray:
    """A (nested-list) JSON value as a dense array of a TensorFlow dtype enum."""
    if dtype != _DT_STRING and dtype not in _NUMPY_DTYPES:
        raise RequestError.invalid(f"{where}: dtype {dtype} is not supported in JSON")

    def shape_of(v):
        if isinstance(v, list):
            if not v:
                return [0]
            inner = [shape_of(x) for x in v]
            if any(s != inner[0] for s in inner):
                raise RequestError.invalid(
                    f"{where}: lists of different lengths (a tensor must be "
                    f"rectangular): {json_excerpt(v)}"
                )
            return [len(v), *inner[0]]
        return []

    shape = shape_of(value)
    flat = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            flat.append(_leaf(v, dtype, where))

    walk(value)
    np_dtype = object if dtype == _DT_STRING else _NUMPY_DTYPES[dtype]
    try:
        array = np.array(flat, dtype=np_dtype)
    except OverflowError:
        raise RequestError.invalid(
            f"{where}: a value does not fit {np.dtype(np_dtype).name}"
        ) from None
    return array.reshape(shape)


def array_to_json(name: str, array: np.ndarray):
    """An output array as JSON values (strings decoded; ``*_bytes`` as b64)."""
    if array.dtype == object:
        if name.endswith(BYTES_SUFFIX):
            convert = lambda b: {BASE64_KEY: base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            convert = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        flat = [convert(b) for b in array.reshape(-1)]
    elif array.dtype == np.float32:
        # float32's shortest round-trip digits, as TF Serving writes them.
        flat = [float(str(v)) for v in array.reshape(-1)]
    else:
        flat = array.reshape(-1).tolist()
    if array.ndim == 0:
        return flat[0]
    nested = flat
    for size in reversed(array.shape[1:]):
        nested = [nested[i : i + size] for i in range(0, len(nested), size)]
    return nested


def rows_to_arrays(instances, inputs: dict) -> dict:
    """The row format (`"instances"`) as one array per input of dtype enum `inputs[name]`."""
    if not isinstance(instances, list):
        raise RequestError.invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise RequestError.invalid("No values in 'instances' array")

    def is_object(v):
        return isinstance(v, dict) and list(v) != [BASE64_KEY]

    objects = is_object(instances[0])
    if not objects and len(inputs) > 1:
        raise RequestError.invalid(
            "instances is a plain list, but expecting list of objects as "
            f"multiple input tensors required ({', '.join(sorted(inputs))})"
        )
    names = sorted(inputs)
    columns = {name: [] for name in names}
    for i, item in enumerate(instances):
        if objects != is_object(item):
            raise RequestError.invalid(
                f"Expecting {'object' if objects else 'value/list'} at item {i} "
                f"of 'instances' list"
            )
        if objects:
            if sorted(item) != names:
                raise RequestError.invalid(
                    f"Failed to process element: {i} of 'instances' list. "
                    f"JSON object keys {sorted(item)} must be equal to: "
                    f"{','.join(names)}"
                )
            for name in names:
                columns[name].append(item[name])
        else:
            columns[names[0]].append(item)
    arrays = {}
    for name in names:
        rows = [
            json_to_array(v, inputs[name], f"instances[{i}].{name}")
            for i, v in enumerate(columns[name])
        ]
        shapes = {r.shape for r in rows}
        if len(shapes) > 1:
            raise RequestError.invalid(
                f"input {name!r}: every instance must have the same shape; "
                f"got {sorted(shapes)}"
            )
        arrays[name] = np.stack(rows)
    return arrays


def columns_to_arrays(value, inputs: dict) -> dict:
    """The columnar format (`"inputs"`) as one array per input."""
    names = sorted(inputs)
    if not isinstance(value, dict) or list(value) == [BASE64_KEY]:
        if len(names) > 1:
            raise RequestError.invalid(
                "inputs is a plain value/list, but expecting an object as "
                f"multiple input tensors required ({', '.join(names)})"
            )
        value = {names[0]: value}
    missing = [n for n in names if n not in value]
    if missing:
        raise RequestError.invalid(
            f"Missing named input: {missing[0]} in 'inputs' object."
        )
    extra = sorted(set(value) - set(names))
    if extra:
        raise RequestError.invalid(
            f"unexpected input(s) {', '.join(extra)} in 'inputs' object; the "
            f"signature takes {', '.join(names)}"
        )
    return {n: json_to_array(value[n], inputs[n], f"inputs.{n}") for n in names}


def json_to_example(value, example, where: str) -> None:
    """Fills the `tf.train.Example` proto `example` from its JSON object `value`."""
    if not isinstance(value, dict):
        raise RequestError.invalid(
            f"{where}: Example must be JSON object but got {json_excerpt(value)}"
        )
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, str):
                feature.bytes_list.value.append(item.encode("utf-8"))
            elif isinstance(item, dict) and list(item) == [BASE64_KEY]:
                feature.bytes_list.value.append(
                    _leaf(item, _DT_STRING, f"{where}.{name}")
                )
            elif isinstance(item, bool):
                feature.int64_list.value.append(int(item))
            elif isinstance(item, int):
                feature.int64_list.value.append(item)
            elif isinstance(item, float):
                feature.float_list.value.append(item)
            else:
                raise RequestError.invalid(
                    f"Feature: {name} has element with unexpected JSON value "
                    f"{json_excerpt(item)} ({where})"
                )
            if len(feature.ListFields()) != 1:
                raise RequestError.invalid(
                    f"Feature: {name} mixes value types ({where})"
                )
