"""The run's input: which source (CSV span folders or a PostgreSQL table) and which span."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional, Tuple

from cartola.data.checks import min_rows
from cartola.data.labels import LabelCoding
from cartola.data.spans import Span, find_span, resolve_span
from cartola.errors import InputDataError


def resolve_input(config, data_dir: Path, requested=None,
                  interval: Optional[Tuple[dt.datetime, dt.datetime]] = None) -> Span:
    """The checked span a run reads (requested, else the latest dated in ``interval``, else
    the latest); raises InputDataError naming the span, file, table or column."""
    if config.source == "postgresql":
        from cartola.data import postgres  # pylint: disable=import-outside-toplevel
        return postgres.resolve(config, requested, interval)
    return resolve_span(data_dir, config.span_pattern, requested, interval,
                        delimiter=config.csv_delimiter, decimal=config.csv_decimal,
                        label=LabelCoding.from_config(config), min_rows=span_min_rows(config))


def span_min_rows(config) -> int:
    """The fewest rows a span needs: the curated schema's minimum of examples per split
    (``dataset_constraints.min_examples_count``), through the configured split."""
    path = config.path(config.schema_path)
    if not path.is_file():
        return 0  # the pipeline names the missing schema
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
    try:
        schema = text_format.Parse(path.read_text(encoding="utf-8"), schema_pb2.Schema())
    except text_format.ParseError as err:
        raise InputDataError(f"{path}: not a schema: {err}") from None
    return min_rows(schema.dataset_constraints.min_examples_count, config.train_buckets,
                    config.eval_buckets)


def find_input(config, data_dir: Path, number: int) -> Optional[Span]:
    """Span ``number`` as the source holds it now, sized, unchecked (for the nodes after
    ExampleGen), or None when it is gone."""
    if config.source == "postgresql":
        from cartola.data import postgres  # pylint: disable=import-outside-toplevel
        return postgres.find(config, number)
    return find_span(data_dir, config.span_pattern, number) or Span(number, data_dir)
