"""The served SavedModel and its request contract: the raw features ``serving_default``
parses, checks of request values against them (plain Python, reused by batch scoring), the
serialized tf.Examples built from checked columns, and the loaded model that predicts.

TensorFlow is imported only when a model is loaded.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from cartola.codec.wire import varint, varints
from cartola.models.model_info import label_of, load_ops, read_info

EXAMPLES_SIGNATURE = "serving_default"
RAW_SIGNATURE = "predict_raw"
OUTPUT_KEY = "probability"

_INT64 = (-(2 ** 63), 2 ** 63 - 1)
FLOAT32_MAX = 3.4028234663852886e38


class RequestError(ValueError):
    """A request the server answers with an error status (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ModelLoadError(RuntimeError):
    """A SavedModel cannot be served (missing signature, unreadable raw feature spec)."""


@dataclasses.dataclass(frozen=True)
class RawFeature:
    """One raw model input as ``serving_default`` parses it."""

    name: str
    kind: str  # "int", "float" or "string"
    required: bool


# --------------------------------------------------------------------------------------------
# Request validation: plain Python, no TensorFlow (batch scoring reuses it).

def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else (
        type(value).__name__)
    return text if len(text) <= 40 else text[:37] + "..."


def check_value(feature: RawFeature, value: Any) -> Any:
    """The value as the example will hold it (None = missing); ValueError says what is wrong."""
    result: Any = None
    if feature.kind == "string":
        if value is not None and not isinstance(value, str):
            raise ValueError(f"feature {feature.name!r} must be a string, got {_show(value)}")
        result = value or None
    elif value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"feature {feature.name!r} must be a number, got {_show(value)}")
        if isinstance(value, float) and math.isnan(value):
            result = None
        elif not math.isfinite(value):
            raise ValueError(f"feature {feature.name!r} must be finite, got {value}")
        elif feature.kind == "int":
            if not float(value).is_integer() or not _INT64[0] <= value <= _INT64[1]:
                raise ValueError(f"feature {feature.name!r} must be an integer, got {value!r}")
            result = int(value)
        elif abs(value) > FLOAT32_MAX:
            raise ValueError(f"feature {feature.name!r} is out of float32 range: {value!r}")
        else:
            result = float(value)
    if result is None and feature.required:
        raise ValueError(f"feature {feature.name!r} is required, got {_show(value)}")
    return result


class _Problems:
    """Collects the first few validation errors of a request so one 400 lists them."""

    LIMIT = 5

    def __init__(self):
        self.messages: List[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        """Count a problem; keep its message if among the first few."""
        self.count += 1
        if len(self.messages) < self.LIMIT:
            self.messages.append(message)

    def raise_if_any(self) -> None:
        """One RequestError listing the kept messages, if there was any problem."""
        if self.count:
            more = f" (and {self.count - len(self.messages)} more)" if self.count > len(
                self.messages) else ""
            raise RequestError("; ".join(self.messages) + more)


def _check_keys(keys, features: Mapping[str, RawFeature], where: str, problems: _Problems):
    unknown = sorted(set(keys) - set(features))
    missing = sorted(set(features) - set(keys))
    if unknown:
        problems.add(f"{where}: unknown feature(s) {unknown}; the model's raw features are "
                     f"{sorted(features)}")
    if missing:
        problems.add(f"{where}: missing feature(s) {missing}; send NaN (numbers) or '' "
                     "(strings) for a missing value")
    return not unknown and not missing


def columns_from_instances(instances: Sequence[Any],
                           features: Mapping[str, RawFeature]) -> Dict[str, List[Any]]:
    """Row form (``instances``: one object per row) to checked columns."""
    columns: Dict[str, List[Any]] = {name: [] for name in features}
    problems = _Problems()
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            problems.add(f"instance {i}: expected an object of raw features, got "
                         f"{_show(instance)}")
            continue
        if not _check_keys(instance, features, f"instance {i}", problems):
            continue
        for name, feature in features.items():
            try:
                columns[name].append(check_value(feature, instance[name]))
            except ValueError as err:
                problems.add(f"instance {i}: {err}")
    problems.raise_if_any()
    return columns


def columns_from_inputs(inputs: Any, features: Mapping[str, RawFeature]) -> Dict[str, List[Any]]:
    """Columnar form (``inputs``: one list per feature) to checked columns."""
    problems = _Problems()
    if not isinstance(inputs, dict):
        raise RequestError("'inputs' must be an object of feature name -> list of values")
    if not _check_keys(inputs, features, "inputs", problems):
        problems.raise_if_any()
    lengths = {name: len(values) if isinstance(values, list) else -1
               for name, values in inputs.items()}
    if any(n < 0 for n in lengths.values()):
        raise RequestError("every 'inputs' value must be a list with one value per row")
    if len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
        raise RequestError(f"'inputs' lists must be non-empty and of equal length, got {lengths}")
    columns: Dict[str, List[Any]] = {}
    for name, feature in features.items():
        checked = []
        for i, value in enumerate(inputs[name]):
            try:
                checked.append(check_value(feature, value))
            except ValueError as err:
                problems.add(f"row {i}: {err}")
        columns[name] = checked
    problems.raise_if_any()
    return columns


def is_b64(value: Any) -> bool:
    """A ``{"b64": "..."}`` object: a serialized tf.Example, TF Serving's binary form."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(values: Sequence[Any]) -> List[bytes]:
    """The bytes of ``{"b64": ...}`` objects; a RequestError names a bad one."""
    try:
        return [base64.b64decode(value["b64"], validate=True) for value in values]
    except (ValueError, TypeError) as err:
        raise RequestError(f"cannot base64-decode an example: {err}") from err


# --------------------------------------------------------------------------------------------
# The model.

def import_tf():
    """TensorFlow, imported on first use so that this module stays light to import."""
    # TFX 1.16 expects Keras 2; the legacy switch must precede the first TF import.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf


def raw_features_of(signature) -> Dict[str, RawFeature]:
    """Raw features a ``serving_default`` concrete function parses from ``tf.Example``.

    Read from its ``ParseExampleV2`` op: dense keys without a default are required, sparse
    keys optional; the op's dtypes give int/float/string.
    """
    tf = import_tf()
    kinds = {tf.int64.as_datatype_enum: "int", tf.float32.as_datatype_enum: "float",
             tf.string.as_datatype_enum: "string"}
    graph_def = signature.graph.as_graph_def()
    found = []
    for function in graph_def.library.function:
        nodes = {node.name: node for node in function.node_def}
        for node in function.node_def:
            if node.op != "ParseExampleV2":
                continue
            inputs = [name.split(":")[0] for name in node.input]

            def const(name, nodes=nodes):
                return nodes[name].attr["value"].tensor
            sparse_keys = [k.decode() for k in const(inputs[2]).string_val]
            dense_keys = [k.decode() for k in const(inputs[3]).string_val]
            result = {}
            for key, dtype in zip(sparse_keys, node.attr["sparse_types"].list.type):
                result[key] = RawFeature(key, kinds.get(dtype, "?"), required=False)
            defaults = inputs[5:5 + len(dense_keys)]
            for key, dtype, default in zip(dense_keys, node.attr["Tdense"].list.type, defaults):
                has_default = any(dim.size for dim in const(default).tensor_shape.dim)
                result[key] = RawFeature(key, kinds.get(dtype, "?"), required=not has_default)
            found.append(result)
    if len(found) != 1 or any(f.kind == "?" for f in found[0].values()):
        raise ModelLoadError(f"cannot read the raw feature spec of {EXAMPLES_SIGNATURE!r}: "
                             f"expected one ParseExampleV2 op of int/float/string features, "
                             f"found {len(found)}")
    return dict(sorted(found[0].items()))


# Feature's oneof: bytes_list(1), float_list(2), int64_list(3), all length-delimited.
_LIST_TAGS = {"string": b"\x0a", "float": b"\x12", "int": b"\x1a"}
# A layout shared by fewer rows is written row by row: below this, numpy's fixed cost per
# call exceeds joining a row's bytes in Python.
_MIN_GROUP_ROWS = 16


class _Column:
    """One feature's checked values ready to encode: per row a layout code (0 = missing, else
    1 + the value's byte count, which fixes every length prefix of the row's map entry) and
    the value bytes (left-aligned rows of a matrix; a flat buffer for strings)."""

    def __init__(self, name: str, kind: str, values: Sequence[Any]):
        key = name.encode("utf-8")
        self._key = b"\x0a" + varint(len(key)) + key
        self._tag = _LIST_TAGS[kind]
        self._heads: Dict[int, bytes] = {}
        self._matrix: Optional[np.ndarray] = None
        if kind == "string":
            encoded = [b"" if v is None else v.encode("utf-8") for v in values]
            present = np.fromiter((v is not None for v in values), bool, len(encoded))
            sizes = np.fromiter(map(len, encoded), np.int64, len(encoded))
            self._starts = np.cumsum(sizes) - sizes
            self._flat = b"".join(encoded)
        else:
            present, numbers = _numbers(kind, values)
            if kind == "float":
                self._matrix = numbers.astype("<f4").view(np.uint8).reshape(-1, 4)
                sizes = np.full(len(numbers), 4)
            else:
                self._matrix, sizes = varints(numbers)
            self._starts = np.arange(len(numbers)) * self._matrix.shape[1]
            self._flat = self._matrix.tobytes()
        self.codes = np.where(present, sizes + 1, 0)

    def head(self, code: int) -> bytes:
        """The map entry's bytes before a value of ``code - 1`` bytes: Features.feature(1)
        entry > key(1), value(2): Feature > the typed list > value(1) (packed for numbers)."""
        if code not in self._heads:
            size = code - 1
            values = b"\x0a" + varint(size)
            feature = self._tag + varint(len(values) + size) + values
            entry = self._key + b"\x12" + varint(len(feature) + size) + feature
            self._heads[code] = b"\x0a" + varint(len(entry) + size) + entry
        return self._heads[code]

    def value(self, row: int, size: int) -> bytes:
        """One row's value bytes."""
        start = int(self._starts[row])
        return self._flat[start:start + size]

    def values(self, rows, size: int) -> np.ndarray:
        """The value bytes of ``rows`` (a slice or indices; values of ``size`` bytes each) as
        an (m, size) matrix."""
        if self._matrix is not None:
            return self._matrix[rows, :size]
        return np.frombuffer(self._flat, np.uint8)[self._starts[rows][:, None] + np.arange(size)]


def _numbers(kind: str, values: Sequence[Any]) -> tuple:
    """(present, values with 0 where missing): float64 for floats, int64 for ints; None and
    NaN are missing."""
    dtype = values.dtype.kind if isinstance(values, np.ndarray) else "O"
    if dtype in "iu":
        return np.ones(len(values), bool), values.astype(np.int64)
    if kind == "float" or dtype == "f":
        numbers = np.asarray(values, dtype=np.float64)  # None -> NaN
        present = ~np.isnan(numbers)
        numbers = np.where(present, numbers, 0.0)
        return present, numbers if kind == "float" else numbers.astype(np.int64)
    # Python ints (the server's checked columns) may exceed 2**53: not through float64.
    present = np.fromiter((v is not None for v in values), bool, len(values))
    return present, np.fromiter((v or 0 for v in values), np.int64, len(values))


def _layouts(columns: List[_Column], rows: int) -> tuple:
    """(order, bounds): a row order (None = as given) that makes rows of one layout (the same
    code in every column) adjacent, and where each layout's run starts and ends."""
    key = np.zeros(rows, dtype=np.int64)
    for column in columns:
        radix = int(column.codes.max()) + 1
        if int(key.max()) >= (1 << 62) // radix:  # renumber the layouts before overflowing
            key = np.unique(key, return_inverse=True)[1]
        key = key * radix + column.codes
    if key.min() == key.max():
        return None, [0, rows]
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.diff(key[order])) + 1
    return order, [0] + starts.tolist() + [rows]


def _same_layout(layout: List[tuple], rows, count: int) -> List[bytes]:
    """Examples of ``count`` rows sharing a layout ((column, code) of the present features):
    a template of the constant bytes, then each column's values as one block."""
    template, blocks = bytearray(), []
    for column, code in layout:
        template += column.head(code)
        blocks.append((len(template), column, code - 1))
        template += bytes(code - 1)
    if not template:
        return [b""] * count
    header = b"\x0a" + varint(len(template))
    width = len(header) + len(template)
    matrix = np.empty((count, width), dtype=np.uint8)
    matrix[:] = np.frombuffer(header + template, np.uint8)
    for offset, column, size in blocks:
        start = len(header) + offset
        matrix[:, start:start + size] = column.values(rows, size)
    return matrix.view(f"V{width}").ravel().tolist()  # void items are bytes, NULs kept


def build_examples(columns: Mapping[str, Sequence[Any]],
                   features: Mapping[str, RawFeature]) -> List[bytes]:
    """Serialized ``tf.Example`` protos from checked columns (lists or numpy arrays; None or
    NaN = feature left out; ints as Python ints, int64, or whole float64).

    Written in protobuf's wire format, column-wise: with one value per feature, rows whose
    values have the same byte counts (a few layouts in practice) share every byte but the
    values, so each layout is a template row copied with numpy and its values written as
    blocks; a rare layout is joined row by row. tfx_bsl's RecordBatchToExamples is several
    times slower here and writes a missing value as an empty feature rather than leaving it
    out. tests/serving/test_app.py checks the bytes parse to the same Example.
    """
    rows = len(next(iter(columns.values()))) if columns else 0
    if not rows:
        return []
    prepared = [_Column(name, features[name].kind, values) for name, values in columns.items()]
    order, bounds = _layouts(prepared, rows)
    encoded: List[bytes] = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        rows_here = slice(start, stop) if order is None else order[start:stop]
        first = start if order is None else int(order[start])
        layout = [(c, int(c.codes[first])) for c in prepared if c.codes[first]]
        if stop - start >= _MIN_GROUP_ROWS:
            encoded.extend(_same_layout(layout, rows_here, stop - start))
            continue
        for row in order[start:stop] if order is not None else range(start, stop):
            body = b"".join(c.head(code) + c.value(row, code - 1) for c, code in layout)
            encoded.append(b"\x0a" + varint(len(body)) + body if body else b"")
    if order is None:
        return encoded
    result = np.empty(rows, dtype=object)
    result[order] = encoded
    return result.tolist()


def _tensor_info(spec, name: str) -> dict:
    from tensorflow.core.framework import types_pb2  # pylint: disable=import-outside-toplevel
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
    return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum), "name": name,
            "tensor_shape": {"dim": dims, "unknown_rank": False}}


_FLOAT32_EXACT_INT = 2 ** 24  # every int up to this is exact in float32


def _takes_features_by_name(function, features: Mapping[str, RawFeature]) -> bool:
    """Whether ``function`` (``predict_raw``) takes exactly ``features``: float32 numbers,
    strings as strings."""
    if function is None:
        return False
    tf = import_tf()
    inputs = function.structured_input_signature[1]
    return set(inputs) == set(features) and all(
        inputs[name].dtype == (tf.string if feature.kind == "string" else tf.float32)
        for name, feature in features.items())


class ServedModel:  # pylint: disable=too-many-instance-attributes
    """One loaded SavedModel version: raw feature spec, metadata and predictions."""

    def __init__(self, version: int, path: Path, loaded):
        self.version = version
        self.path = Path(path)
        self._loaded = loaded  # the signatures' variables live as long as this object
        signatures = loaded.signatures
        if EXAMPLES_SIGNATURE not in signatures:
            raise ModelLoadError(f"{path}: no {EXAMPLES_SIGNATURE!r} signature")
        self._serve = signatures[EXAMPLES_SIGNATURE]
        self.features = raw_features_of(self._serve)
        # What a score is the probability of, named in every answer (None: no record).
        self.label = label_of(read_info(path))
        self._by_name = (signatures[RAW_SIGNATURE]
                         if _takes_features_by_name(signatures.get(RAW_SIGNATURE), self.features)
                         else None)
        self.signature_defs = {}
        for sig_name, function in signatures.items():
            inputs = function.structured_input_signature[1]
            self.signature_defs[sig_name] = {
                "inputs": {k: _tensor_info(v, f"{sig_name}_{k}:0") for k, v in inputs.items()},
                "outputs": {k: _tensor_info(v, k) for k, v in function.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict"}

    @classmethod
    def load(cls, path: Path, version: Optional[int] = None) -> "ServedModel":
        """Load and warm up (first calls trace and allocate; requests should not pay that)."""
        tf = import_tf()
        path = Path(path)
        load_ops(path)
        model = cls(int(path.name) if version is None else version, path,
                    tf.saved_model.load(str(path)))
        model.warm_up()
        return model

    def warm_up(self) -> None:
        """One prediction on a made-up row with every feature present."""
        row = {name: ("x" if f.kind == "string" else 1 if f.kind == "int" else 0.0)
               for name, f in self.features.items()}
        self.predict_columns({name: [value] for name, value in row.items()})

    def predict_serialized(self, serialized: Sequence[bytes]) -> np.ndarray:
        """PRO probabilities, shape [n], of serialized raw ``tf.Example`` protos."""
        tf = import_tf()
        try:
            outputs = self._serve(examples=tf.constant(list(serialized), dtype=tf.string))
        except tf.errors.InvalidArgumentError as err:
            raise RequestError(f"the model rejected the examples: {err.message}") from err
        return outputs[OUTPUT_KEY].numpy().reshape(-1)

    def predict_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """PRO probabilities of checked columns (see :func:`columns_from_instances`; numpy
        columns as :func:`build_examples` takes them work too, as batch scoring passes)."""
        return self.predict_serialized(build_examples(columns, self.features))

    def predict_by_name(self, columns: Mapping[str, Sequence[Any]]) -> Optional[np.ndarray]:
        """PRO probabilities of checked columns through ``predict_raw``, which takes them as
        tensors (no tf.Example to write or parse: several times faster than
        :meth:`predict_columns`); None when that could differ from :meth:`predict_columns`:
        no such signature, an int float32 does not hold exactly, an empty string (missing
        there), a number beyond float32."""
        if self._by_name is None or not columns:
            return None
        tf = import_tf()
        tensors = {}
        for name, values in columns.items():
            kind = self.features[name].kind
            if kind == "string":
                text = ["" if value is None else value for value in values]
                if any(value == "" for value, given in zip(text, values) if given is not None):
                    return None
                tensors[name] = tf.constant(text, dtype=tf.string)
                continue
            numbers = np.asarray(values, dtype=np.float64)  # None -> NaN: missing in both
            narrow = numbers.astype(np.float32)
            if np.isinf(narrow).any() or (kind == "int" and (
                    np.abs(np.nan_to_num(numbers)) > _FLOAT32_EXACT_INT).any()):
                return None
            tensors[name] = tf.constant(narrow)
        return self._by_name(**tensors)[OUTPUT_KEY].numpy().reshape(-1)

    def predict_instances(self, instances: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validate raw feature objects and predict, as the server does for ``instances``."""
        return self.predict_columns(columns_from_instances(instances, self.features))
