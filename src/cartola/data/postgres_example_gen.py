"""PostgresExampleGen: one span of a PostgreSQL table or query as tf.Examples.

TFX's QueryBasedExampleGen (its driver fills the span's date into the query and records the
span in ML Metadata) with an executor that streams rows through a psycopg server-side cursor,
so neither the database nor this process holds the span in memory, and on the DirectRunner
hands them to :mod:`cartola.data.example_writer` (TFX's hash split without Beam; other
runners keep TFX's Beam path). Types come from the database: integer and boolean
columns -> int64, real and numeric -> float, text, dates and timestamps -> bytes, NULL -> an
empty value list (what CsvExampleGen writes for an empty cell, so the same rows give the same
examples and the same hash split).

Chosen over Beam's ``ReadFromJdbc``: that is a cross-language transform needing a Java
expansion service and a JDBC jar at run time, which this project cannot download.
"""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Dict, Iterator, List, Optional

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from google.protobuf import json_format, struct_pb2  # pylint: disable=no-name-in-module
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import QueryBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils
from tfx_bsl.coders import example_coder

from cartola.data import example_writer, postgres
from cartola.data.labels import LabelCoding
from cartola.errors import RunFaultError

NODE_ID = "PostgresExampleGen"
FETCH_ROWS = 5000  # rows per round trip of the server-side cursor, and per encoded batch
_ARROW_TYPES = {"INT": pa.large_list(pa.int64()), "FLOAT": pa.large_list(pa.float32()),
                "BYTES": pa.large_list(pa.large_binary())}


def source_config(uri: str, password_file: str, exclude: List[str],
                  label: Optional[LabelCoding] = None) -> example_gen_pb2.CustomConfig:
    """The executor's settings as ``custom_config``: where to connect (no password: the
    executor reads it from the environment or the 0600 file), columns to leave out and the
    label's coding."""
    settings = struct_pb2.Struct()  # pylint: disable=no-member
    settings.update({"uri": uri, "password_file": password_file, "exclude": exclude,
                     "label": (label or LabelCoding()).as_dict()})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(settings)
    return config


def _settings(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY],
                              config)
    settings = struct_pb2.Struct()  # pylint: disable=no-member
    config.custom_config.Unpack(settings)
    return json_format.MessageToDict(settings)


def _value(value: Any) -> Any:
    """A database value as the example holds it."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat().encode("utf-8")
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def encode(rows: List[tuple], names: List[str], kinds: List[str]) -> List[bytes]:
    """Serialized tf.Examples of fetched rows, encoded column-wise by tfx_bsl (C++)."""
    arrays = [pa.array([[] if row[i] is None else [_value(row[i])] for row in rows],
                       _ARROW_TYPES[kind]) for i, kind in enumerate(kinds)]
    batch = pa.RecordBatch.from_arrays(arrays, names)
    # tfx_bsl writes features in hash-map order; the hash split keys on the deterministic
    # (sorted) serialization, as for CsvExampleGen's examples: the same rows land in the same
    # split from either source.
    return [tf.train.Example.FromString(record).SerializeToString(deterministic=True)
            for record in example_coder.RecordBatchToExamples(batch)]


def read_rows(settings: Dict[str, Any], query: str) -> Iterator[List[bytes]]:
    """A query's rows as serialized tf.Examples, ``FETCH_ROWS`` at a time through a
    server-side cursor.

    A server lost mid-read (stopped, restarted, network gone) is a :class:`RunFaultError`
    naming the database: the writer holds the rows in scratch files until the last one came,
    so nothing is written and the next attempt starts clean."""
    import psycopg  # pylint: disable=import-outside-toplevel
    exclude = set(settings["exclude"])
    with postgres.connect(settings["uri"], settings["password_file"]) as conn:
        try:
            yield from _fetch(conn, query, exclude, LabelCoding(**settings.get("label", {})))
        except psycopg.OperationalError as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise RunFaultError(
                f"PostgresExampleGen: lost PostgreSQL database {postgres.database(settings['uri'])}"
                f" at {postgres.redact(settings['uri'])} while reading the span: {reason}; "
                f"nothing was written, run again once the server is back") from None


def _fetch(conn, query: str, exclude: set, coding: LabelCoding) -> Iterator[List[bytes]]:
    with conn.cursor(name="cartola_example_gen") as cursor:
        cursor.execute(query)
        columns = [(i, col.name,
                    postgres.KINDS.get(postgres.type_name(conn, col.type_code), ""))
                   for i, col in enumerate(cursor.description)
                   if col.name not in exclude]
        unreadable = [name for _, name, kind in columns if not kind]
        if unreadable:
            raise ValueError(f"query {query!r}: columns {unreadable} have types the "
                             f"PostgreSQL ExampleGen cannot read; cast them")
        names = [name for _, name, _ in columns]
        kinds = [kind for _, _, kind in columns]
        keep = [i for i, _, _ in columns]
        position = names.index(coding.column) if coding.active and coding.column in names \
            else None
        if position is not None:
            kinds[position] = "INT"
        while rows := cursor.fetchmany(FETCH_ROWS):
            rows = [tuple(row[i] for i in keep) for row in rows]
            if position is not None:
                rows = [row[:position] + (_label_value(coding, row[position]),)
                        + row[position + 1:] for row in rows]
            yield encode(rows, names, kinds)


def _label_value(coding: LabelCoding, value: Any) -> Optional[int]:
    """A database label value read through the coding (None stays missing)."""
    if value is None:
        return None
    code = coding.encode(str(value))
    return int(code) if code else None


class _ReadSpan(beam.DoFn):
    """A query -> its rows as serialized tf.Examples (TFX's Beam path)."""

    def __init__(self, settings: Dict[str, Any]):
        super().__init__()
        self._settings = settings

    def process(self, query: str) -> Iterator[bytes]:  # pylint: disable=arguments-differ
        """Every row of the query."""
        for batch in read_rows(self._settings, query):
            yield from batch


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _PostgresToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                       split_pattern: str) -> beam.pvalue.PCollection:
    """One split's query (span date filled in by the driver) -> tf.Examples."""
    return (pipeline
            | "Query" >> beam.Create([split_pattern])
            | "ReadRows" >> beam.ParDo(_ReadSpan(_settings(exec_properties))))


class Executor(BaseExampleGenExecutor):
    """Reads the span's rows; records the query and the row count on the Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _PostgresToExample

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        if example_writer.unsupported(exec_properties, self._beam_pipeline_args or []) is None:
            settings = _settings(exec_properties)
            counts = example_writer.write_examples(
                output_dict, exec_properties, lambda query: read_rows(settings, query),
                example_writer.shard_count(self._beam_pipeline_args or []))
        else:
            super().Do(input_dict, output_dict, exec_properties)
            counts = {split: _count(artifact_utils.get_split_uri([examples], split))
                      for split in artifact_utils.decode_split_names(examples.split_names)}
            example_writer.record_counts(examples, counts)
        if not sum(counts.values()):
            raise ValueError(f"query {input_config.splits[0].pattern!r} returned no row")
        examples.set_string_custom_property("query", input_config.splits[0].pattern)


def _count(split_uri: str) -> int:
    files = tf.io.gfile.glob(f"{split_uri}/*.gz")
    return int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(
        tf.constant(0, tf.int64), lambda total, _: total + 1).numpy()) if files else 0


def postgres_example_gen(source: "postgres.PostgresSource", input_config, output_config,
                         range_config) -> QueryBasedExampleGen:
    """The pipeline's ExampleGen node for the PostgreSQL source (id ``PostgresExampleGen``)."""
    return QueryBasedExampleGen(
        input_config=input_config, output_config=output_config, range_config=range_config,
        custom_config=source_config(source.uri, source.password_file,
                                    [source.snapshot_column],
                                    LabelCoding.from_config(source.config)),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor)).with_id(NODE_ID)
