"""CsvExampleGen for the CSV files people export: any delimiter, a decimal comma, a BOM.

TFX's CsvExampleGen hard-codes ',' (``ParseCSVLine(delimiter=',')``) and reads the header with
``readline().split(',')``, so a spreadsheet export with ';' fields, '3,5' numbers or a UTF-8
BOM either fails inside Beam or names its first column '\\ufeffid'. This executor keeps TFX's
record reader (quoted newlines), type inference and tf.Example conversion, and changes only
the header parsing, the delimiter, the decimal mark and, with a label coding
(:mod:`cartola.data.labels`), the label's text read as 1/0. The component is TFX's
FileBasedExampleGen with this executor, so splits, hash buckets and spans work as in TFX.

On the DirectRunner (every local and Airflow run unless ``beam_args`` name another runner) the
rows do not go through Beam at all: each file is parsed with :mod:`csv`, typed by TFX's own
rules on each batch's distinct values, encoded column-wise by tfx_bsl and handed to
:mod:`cartola.data.example_writer`. The examples are those TFX's path writes, value for value
(a test compares the two on awkward data), in a fraction of the time and memory.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from google.protobuf import json_format, struct_pb2  # pylint: disable=no-name-in-module
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils
from tfx_bsl.coders import csv_decoder, example_coder

from cartola.data import example_writer
from cartola.data.labels import LabelCoding

NODE_ID = "CsvExampleGen"
BATCH_ROWS = 20_000  # rows parsed, typed and encoded together
_DECIMAL_COMMA = re.compile(rb"^\s*[+-]?\d*,\d+\s*$")
_DECIMAL_COMMA_TEXT = re.compile(_DECIMAL_COMMA.pattern.decode(), re.ASCII)
_Type = csv_decoder.ColumnType
_INT64 = np.iinfo(np.int64)


def dialect_config(delimiter: str, decimal: str,
                   label: Optional[LabelCoding] = None) -> example_gen_pb2.CustomConfig:
    """The executor's settings, as FileBasedExampleGen's ``custom_config``."""
    settings = struct_pb2.Struct()  # pylint: disable=no-member
    settings.update({"delimiter": delimiter, "decimal": decimal,
                     "label": (label or LabelCoding()).as_dict()})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(settings)
    return config


def _dialect(exec_properties: Dict[str, Any]) -> Dict[str, str]:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    dialect: Dict[str, Any] = {"delimiter": ",", "decimal": ".", "label": {}}
    if raw:
        config = example_gen_pb2.CustomConfig()
        proto_utils.json_to_proto(raw, config)
        settings = struct_pb2.Struct()  # pylint: disable=no-member
        if config.custom_config.Unpack(settings):
            dialect.update(json_format.MessageToDict(settings))
    return dialect


def read_header(path: str, delimiter: str) -> List[str]:
    """Column names of a CSV file: csv-parsed (quotes honoured), BOM and spaces stripped."""
    with fileio.open(path, "rb") as handle:
        first = handle.readline().decode("utf-8-sig")
    return [name.strip() for name in next(csv.reader([first], delimiter=delimiter), [])]


def _decimal_point(cells: List[bytes]) -> List[bytes]:
    return [cell.replace(b",", b".") if _DECIMAL_COMMA.match(cell) else cell for cell in cells]


def _label_cells(coding: LabelCoding, index: int):
    """A Beam map: the label cell of a parsed record through ``coding``."""
    def encode(cells: List[bytes]) -> List[bytes]:
        cells = list(cells)
        cells[index] = coding.encode(cells[index].decode("utf-8")).encode("utf-8")
        return cells
    return encode


@beam.typehints.with_input_types(beam.Pipeline)
class _CsvToExample(beam.PTransform):
    """One split's CSV files -> tf.Examples (the TFX transform, with a dialect)."""

    def __init__(self, exec_properties: Dict[str, Any], split_pattern: str):
        super().__init__()
        self._pattern = os.path.join(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
        self._dialect = _dialect(exec_properties)

    def expand(self, pcoll):  # pylint: disable=arguments-renamed
        """Files -> parsed records (dialect applied) -> typed tf.Examples."""
        files = fileio.glob(self._pattern)
        if not files:
            raise RuntimeError(f"split pattern {self._pattern} matches no file")
        delimiter = self._dialect["delimiter"]
        column_names = read_header(files[0], delimiter)
        for path in files[1:]:
            if read_header(path, delimiter) != column_names:
                raise RuntimeError(f"{path}: header differs from {files[0]}")
        lines = (pcoll
                 | "CreateFilenames" >> beam.Create(files)
                 # TFX's reader: skips the header, joins quoted newlines, decodes UTF-8.
                 | "ReadFromText" >> beam.ParDo(tfx_csv._ReadCsvRecordsFromTextFile())  # pylint: disable=protected-access
                 | "ParseCSVLine" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=delimiter))
                 | "ExtractParsedCSVLines" >> beam.Keys())
        if self._dialect["decimal"] == ",":
            lines = lines | "DecimalPoint" >> beam.Map(_decimal_point)
        coding = LabelCoding(**self._dialect["label"])
        if coding.active and coding.column in column_names:
            lines = lines | "LabelCoding" >> beam.Map(
                _label_cells(coding, column_names.index(coding.column)))
        column_infos = beam.pvalue.AsSingleton(
            lines | "InferColumnTypes" >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)))
        return lines | "ToTFExample" >> beam.ParDo(
            tfx_csv._ParsedCsvToTfExample(), column_infos)  # pylint: disable=protected-access


def _rows(path: str, width: int, delimiter: str) -> Iterator[List[List[str]]]:
    """A local CSV file's records after the header line, in batches; blank lines skipped as
    TFX skips them, a record with the wrong field count refused with its line."""
    with open(path, encoding="utf-8", newline="") as handle:
        handle.readline()  # the header: one physical line, as TFX's reader skips it
        reader = csv.reader(handle, delimiter=delimiter)
        batch: List[List[str]] = []
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"{path}:{reader.line_num + 1}: {len(row)} fields, the "
                                 f"header has {width}")
            batch.append(row)
            if len(batch) == BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch


def _columns(batch: List[List[str]], decimal: str,
             label: Optional[Tuple[int, LabelCoding]] = None) -> List[Sequence[str]]:
    columns: List[Sequence[str]] = list(zip(*batch))
    if label is not None:
        columns[label[0]] = label[1].encode_column(columns[label[0]])
    if decimal != ",":
        return columns
    for index, column in enumerate(columns):
        fixed = {value: value.replace(",", ".") for value in set(column)
                 if "," in value and _DECIMAL_COMMA_TEXT.match(value)}
        if fixed:
            columns[index] = [fixed.get(value, value) for value in column]
    return columns


def _column_type(values: Set[str]) -> _Type:
    """The type TFX's ColumnTypeInferrer gives these distinct cells, checked with bulk
    ``int``/``float`` calls instead of one call per cell."""
    values.discard("")
    if not values:
        return _Type.UNKNOWN
    cells = [value.encode("utf-8") for value in values]
    try:
        numbers = list(map(int, cells))
    except ValueError:
        pass
    else:
        fits = _INT64.min <= min(numbers) and max(numbers) <= _INT64.max
        return _Type.INT if fits else _Type.STRING
    try:
        for _ in map(float, cells):
            pass
    except ValueError:
        return _Type.STRING
    # An integer beyond int64 makes the column a string column, even among floats.
    return max([_Type.FLOAT] + [csv_decoder._InferValueType(cell)  # pylint: disable=protected-access
                                for cell in cells if len(cell) > 18])


def _array(column: Sequence[str], kind: _Type) -> pa.Array:
    """One column as tfx_bsl's list array: a one-value list per cell, empty for ''."""
    present = np.fromiter((value != "" for value in column), bool, len(column))
    offsets = np.zeros(len(column) + 1, np.int64)
    np.cumsum(present, out=offsets[1:])
    values = [value for value in column if value]
    if kind == _Type.INT:
        data = pa.array(np.fromiter(map(int, values), np.int64, len(values)))
    elif kind == _Type.FLOAT:
        with np.errstate(over="ignore"):  # beyond float32, inf, as the proto stores it
            data = pa.array(np.fromiter(map(float, values), np.float64,
                                        len(values)).astype(np.float32))
    else:
        data = pa.array(values, pa.large_binary())
    return pa.LargeListArray.from_arrays(pa.array(offsets), data)


def _column_kinds(files: List[str], names: List[str], delimiter: str, decimal: str,
                  coded: Optional[Tuple[int, LabelCoding]]) -> List[_Type]:
    """Each column's type over every file (TFX's rules and type hierarchy)."""
    kinds = [_Type.UNKNOWN] * len(names)
    for path in files:
        for batch in _rows(path, len(names), delimiter):
            for index, column in enumerate(_columns(batch, decimal, coded)):
                if kinds[index] != _Type.STRING:
                    kinds[index] = max(kinds[index], _column_type(set(column)))
    return kinds


def read_examples(pattern: str, delimiter: str, decimal: str,
                  label: Optional[LabelCoding] = None) -> Iterator[List[bytes]]:
    """Serialized tf.Examples of the files matching ``pattern``, in batches.

    Two passes: the first types each column over every file (the same rules and type
    hierarchy as TFX's ColumnTypeInferrer), the second encodes. Features are serialized
    deterministically; a column empty in every row is a feature with no kind, as in TFX.
    ``label``: the label column's text read as 1/0."""
    files = fileio.glob(pattern)
    if not files:
        raise RuntimeError(f"split pattern {pattern} matches no file")
    names = read_header(files[0], delimiter)
    for path in files[1:]:
        if read_header(path, delimiter) != names:
            raise RuntimeError(f"{path}: header differs from {files[0]}")
    coded = ((names.index(label.column), label)
             if label is not None and label.active and label.column in names else None)
    kinds = _column_kinds(files, names, delimiter, decimal, coded)
    typed = [index for index, kind in enumerate(kinds) if kind != _Type.UNKNOWN]
    empty = [names[index] for index, kind in enumerate(kinds) if kind == _Type.UNKNOWN]
    parse = tf.train.Example.FromString
    for path in files:
        for batch in _rows(path, len(names), delimiter):
            columns = _columns(batch, decimal, coded)
            records = example_coder.RecordBatchToExamples(pa.RecordBatch.from_arrays(
                [_array(columns[index], kinds[index]) for index in typed],
                [names[index] for index in typed]))
            examples = []
            for record in records:
                # tfx_bsl writes features in hash-map order; TFX hashes the deterministic
                # (sorted) serialization for the split, so the bytes are made that.
                example = parse(record)
                for name in empty:
                    example.features.feature[name].Clear()
                examples.append(example.SerializeToString(deterministic=True))
            yield examples


class Executor(tfx_csv.Executor):
    """TFX's CsvExampleGen executor with the dialect from ``custom_config``; without Beam
    where :func:`cartola.data.example_writer.unsupported` allows."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToExample

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        why = example_writer.unsupported(exec_properties, self._beam_pipeline_args or [])
        if why is None and "://" in input_base:
            why = "input on a remote file system"
        if why is not None:
            logging.info("CsvExampleGen through Beam: %s", why)
            super().Do(input_dict, output_dict, exec_properties)
            return
        dialect = _dialect(exec_properties)
        example_writer.write_examples(
            output_dict, exec_properties,
            lambda pattern: read_examples(os.path.join(input_base, pattern),
                                          dialect["delimiter"], dialect["decimal"],
                                          LabelCoding(**dialect["label"])),
            example_writer.shard_count(self._beam_pipeline_args or []))


def csv_example_gen(input_base: str, delimiter: str, decimal: str, input_config,
                    output_config, range_config=None,
                    label: Optional[LabelCoding] = None) -> FileBasedExampleGen:
    """The pipeline's ExampleGen node (id ``CsvExampleGen``)."""
    return FileBasedExampleGen(
        input_base=input_base, input_config=input_config, output_config=output_config,
        range_config=range_config,
        custom_config=dialect_config(delimiter, decimal, label),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor)).with_id(NODE_ID)
