"""CsvExampleGen for the CSV files people export: any delimiter, a decimal comma, a BOM.

TFX's CsvExampleGen hard-codes ',' (``ParseCSVLine(delimiter=',')``) and reads the header with
``readline().split(',')``, so a spreadsheet export with ';' fields, '3,5' numbers or a UTF-8
BOM either fails inside Beam or names its first column '\\ufeffid'. This executor keeps TFX's
record reader (quoted newlines), type inference and tf.Example conversion, and changes only
the header parsing, the delimiter and the decimal mark. The component is TFX's
FileBasedExampleGen with this executor, so splits, hash buckets and spans work as in TFX.
"""
from __future__ import annotations

import csv
import json
import os
import re
from typing import Any, Dict, List

import apache_beam as beam
from google.protobuf import struct_pb2  # pylint: disable=no-name-in-module
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils
from tfx_bsl.coders import csv_decoder

NODE_ID = "CsvExampleGen"
_DECIMAL_COMMA = re.compile(rb"^\s*[+-]?\d*,\d+\s*$")


def dialect_config(delimiter: str, decimal: str) -> example_gen_pb2.CustomConfig:
    """The executor's settings, as FileBasedExampleGen's ``custom_config``."""
    settings = struct_pb2.Struct()  # pylint: disable=no-member
    settings.update({"delimiter": delimiter, "decimal": decimal})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(settings)
    return config


def _dialect(exec_properties: Dict[str, Any]) -> Dict[str, str]:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    dialect = {"delimiter": ",", "decimal": "."}
    if raw:
        config = example_gen_pb2.CustomConfig()
        proto_utils.json_to_proto(raw, config)
        settings = struct_pb2.Struct()  # pylint: disable=no-member
        if config.custom_config.Unpack(settings):
            dialect.update(json.loads(json.dumps(dict(settings))))
    return dialect


def read_header(path: str, delimiter: str) -> List[str]:
    """Column names of a CSV file: csv-parsed (quotes honoured), BOM and spaces stripped."""
    with fileio.open(path, "rb") as handle:
        first = handle.readline().decode("utf-8-sig")
    return [name.strip() for name in next(csv.reader([first], delimiter=delimiter), [])]


def _decimal_point(cells: List[bytes]) -> List[bytes]:
    return [cell.replace(b",", b".") if _DECIMAL_COMMA.match(cell) else cell for cell in cells]


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
        column_infos = beam.pvalue.AsSingleton(
            lines | "InferColumnTypes" >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)))
        return lines | "ToTFExample" >> beam.ParDo(
            tfx_csv._ParsedCsvToTfExample(), column_infos)  # pylint: disable=protected-access


class Executor(tfx_csv.Executor):
    """TFX's CsvExampleGen executor with the dialect from ``custom_config``."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToExample


def csv_example_gen(input_base: str, delimiter: str, decimal: str, input_config,
                    output_config, range_config=None) -> FileBasedExampleGen:
    """The pipeline's ExampleGen node (id ``CsvExampleGen``)."""
    return FileBasedExampleGen(
        input_base=input_base, input_config=input_config, output_config=output_config,
        range_config=range_config,
        custom_config=dialect_config(delimiter, decimal),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor)).with_id(NODE_ID)
