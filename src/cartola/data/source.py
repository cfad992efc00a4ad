"""The run's input: which source (CSV span folders or a PostgreSQL table) and which span."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional, Tuple

from cartola.data.spans import Span, find_span, resolve_span


def resolve_input(config, data_dir: Path, requested=None,
                  interval: Optional[Tuple[dt.datetime, dt.datetime]] = None) -> Span:
    """The checked span a run reads (requested, else the latest dated in ``interval``, else
    the latest); raises InputDataError naming the span, file, table or column."""
    if config.source == "postgresql":
        from cartola.data import postgres  # pylint: disable=import-outside-toplevel
        return postgres.resolve(config, requested, interval)
    return resolve_span(data_dir, config.span_pattern, requested, interval,
                        delimiter=config.csv_delimiter, decimal=config.csv_decimal)


def find_input(config, data_dir: Path, number: int) -> Optional[Span]:
    """Span ``number`` as the source holds it now, sized, unchecked (for the nodes after
    ExampleGen), or None when it is gone."""
    if config.source == "postgresql":
        from cartola.data import postgres  # pylint: disable=import-outside-toplevel
        return postgres.find(config, number)
    return find_span(data_dir, config.span_pattern, number) or Span(number, data_dir)
