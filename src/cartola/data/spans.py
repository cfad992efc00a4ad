"""Spans of the input: which weekly snapshot folder a run reads, resolved before any TFX work.

The data root holds one folder per snapshot, matched by ``span_pattern`` in TFX's syntax:
``snapshot={YYYY}-{MM}-{DD}/*.csv`` (a date span; its TFX span number is the days since
1970-01-01, as ``tfx.components.example_gen.utils.date_to_span_number``) or
``span-{SPAN}/*.csv`` (a numbered span). A data root without matching folders but with CSV
files of its own is one span (number 0), so a flat folder works as before.

Resolving here rather than in ExampleGen's driver gives a clear error naming the span (missing,
empty, another header) before Beam starts, and lets Airflow map a run's data interval to a
span. The pipeline then pins the span with a static RangeConfig, so TFX records it in ML
Metadata. Cheap to import: no TFX (the Airflow DAG file's tasks call it).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

from cartola.config import split_pattern
from cartola.data.checks import (check_input_dir, checked_rows, compare_headers, file_header,
                                 require_rows)
from cartola.errors import InputDataError

EPOCH = dt.date(1970, 1, 1)
FLAT_PATTERN = "*.csv"
_SPEC_REGEX = {"{YYYY}": r"(?P<year>\d{4})", "{MM}": r"(?P<month>\d{2})",
               "{DD}": r"(?P<day>\d{2})", "{SPAN}": r"(?P<span>\d+)"}


@dataclasses.dataclass(frozen=True)
class Span:
    """One snapshot of the input: its TFX span number, folder and date (date patterns)."""

    number: int
    folder: Path
    date: Optional[dt.date] = None
    flat: bool = False
    # A span read from a database: where it lies ("postgresql table t") and its size in
    # bytes there (files have neither: their folder says where, their files how big).
    source: str = ""
    size: Optional[int] = None

    @property
    def location(self) -> str:
        """Where the span's rows are: its folder, or its database table."""
        return self.source or str(self.folder)

    @property
    def name(self) -> str:
        """How messages and reports name the span: its date, its number, or "flat folder"."""
        if self.flat:
            return "flat folder"
        return self.date.isoformat() if self.date else str(self.number)


def date_to_span(day: dt.date) -> int:
    """TFX's span number of a date: days since 1970-01-01."""
    return (day - EPOCH).days


def span_to_date(number: int) -> dt.date:
    """The date of a TFX date-span number."""
    return EPOCH + dt.timedelta(days=number)


def span_label(number: Optional[int], pattern: str) -> str:
    """How messages name a span number: its date for date patterns, else the number."""
    if number is None:
        return "?"
    if number == 0 and is_date_pattern(pattern):
        return "flat folder"  # no span folders: the data root itself is span 0
    return span_to_date(number).isoformat() if is_date_pattern(pattern) else str(number)


def is_date_pattern(pattern: str) -> bool:
    """Whether spans of ``pattern`` are dates."""
    return "{YYYY}" in pattern


def _folder_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{YYYY\}|\{MM\}|\{DD\}|\{SPAN\})", template)
    return re.compile("".join(_SPEC_REGEX.get(part, re.escape(part)) for part in parts))


def list_spans(data_dir: Path, pattern: str) -> List[Span]:
    """Every span folder under ``data_dir`` matching ``pattern``, oldest first."""
    template, _ = split_pattern(pattern)
    regex = _folder_regex(template)
    glob = re.sub(r"\{(YYYY|MM|DD|SPAN)\}", "*", template)
    spans = {}
    for folder in sorted(data_dir.glob(glob)):
        match = regex.fullmatch(folder.relative_to(data_dir).as_posix())
        if not match or not folder.is_dir():
            continue
        if match.groupdict().get("span") is not None:
            span = Span(int(match["span"]), folder)
        else:
            try:
                day = dt.date(int(match["year"]), int(match["month"]), int(match["day"]))
            except ValueError:
                raise InputDataError(f"{folder}: not a date (span_pattern {pattern!r})") from None
            span = Span(date_to_span(day), folder, day)
        if span.number in spans:
            raise InputDataError(f"{folder} and {spans[span.number].folder} are the same span "
                                 f"{span.name}: keep one")
        spans[span.number] = span
    return [spans[number] for number in sorted(spans)]


def find_span(data_dir: Path, pattern: str, number: int) -> Optional[Span]:
    """The span numbered ``number`` as it lies under ``data_dir`` (no file checks: for
    tasks that read a span ExampleGen already ingested), or None when it is gone."""
    if not data_dir.is_dir():
        return None
    found = list_spans(data_dir, pattern)
    if not found:
        return Span(0, data_dir, flat=True) if number == 0 else None
    return next((span for span in found if span.number == number), None)


def latest_folder(data_dir: Path, pattern: str) -> Path:
    """The newest span's folder, or ``data_dir`` itself when it holds no span folders (no
    file checks: for defaults shown in ``--help``)."""
    found = list_spans(data_dir, pattern) if data_dir.is_dir() else []
    return found[-1].folder if found else data_dir


def parse_requested(value: Union[str, int], pattern: str) -> int:
    """Span number of a requested span: "YYYY-MM-DD" for date patterns, an integer otherwise."""
    text = str(value).strip()
    if is_date_pattern(pattern):
        try:
            return date_to_span(dt.date.fromisoformat(text))
        except ValueError:
            raise InputDataError(f"span {text!r}: expected a date YYYY-MM-DD "
                                 f"(span_pattern {pattern!r})") from None
    if not text.isdigit():
        raise InputDataError(f"span {text!r}: expected a span number (span_pattern {pattern!r})")
    return int(text)


def _describe(spans: List[Span]) -> str:
    if not spans:
        return "none"
    return (spans[0].name if len(spans) == 1
            else f"{len(spans)} spans, {spans[0].name} to {spans[-1].name}")


def resolve_span(data_dir: Path, pattern: str, requested: Union[str, int, None] = None,
                 interval: Optional[Tuple[dt.datetime, dt.datetime]] = None,
                 delimiter: str = ",", decimal: str = ".", label=None,
                 min_rows: int = 0) -> Span:
    """The span a run reads, its files checked (``cartola.data.checks``).

    ``requested`` picks one span; ``interval`` (a scheduled or backfill run's data interval,
    [start, end)) takes the latest span dated inside it; otherwise the latest span. Raises
    InputDataError naming the span when it is missing, has no file, or its header differs
    from the span before it; ``label`` (a LabelCoding) and ``min_rows`` go to the file checks.
    """
    if not data_dir.is_dir():
        raise InputDataError(f"input folder not found: {data_dir}")
    spans = list_spans(data_dir, pattern)
    if not spans:
        if requested is not None:
            raise InputDataError(f"span {requested} requested, but {data_dir} has no span "
                                 f"folders matching {pattern!r}")
        check_input_dir(data_dir, delimiter, decimal, label, min_rows)
        return Span(0, data_dir, flat=True)
    span = pick_span(spans, f"{data_dir} (span_pattern {pattern!r})", pattern, requested,
                     interval)
    _, files = split_pattern(pattern)
    if not any(path.is_file() for path in span.folder.glob(files)):
        raise InputDataError(f"span {span.name} ({span.folder}): empty, no file matching "
                             f"{files!r}; nothing to train on")
    checked, rows = checked_rows(span.folder, delimiter, decimal, label)
    before = [other for other in spans if other.number < span.number]
    if before:
        previous = check_input_dir(before[-1].folder, delimiter, decimal)[0]
        problem = compare_headers(previous, file_header(previous, delimiter), checked[0],
                                  file_header(checked[0], delimiter))
        if problem:
            raise InputDataError(f"span {span.name}: {problem} (span {before[-1].name})")
    require_rows(checked, span.folder, rows, min_rows)  # after the header: the worse problem
    return span


def pick_span(spans: List[Span], where: str, pattern: str, requested, interval) -> Span:
    """The requested span, else the latest dated in ``interval``, else the latest; raises
    InputDataError naming ``where`` the spans are and which exist."""
    if requested is not None:
        number = parse_requested(requested, pattern)
        found = [span for span in spans if span.number == number]
        if not found:
            name = (span_to_date(number).isoformat() if is_date_pattern(pattern)
                    else str(number))
            raise InputDataError(f"span {name} not found under {where}; available: "
                                 f"{_describe(spans)}")
        return found[0]
    if interval is not None and is_date_pattern(pattern):
        start, end = (moment.date() if isinstance(moment, dt.datetime) else moment
                      for moment in interval)
        inside = [span for span in spans if start <= span.date < end]
        if not inside:
            raise InputDataError(
                f"no span dated in the run's data interval [{start}, {end}) under {where}; "
                f"available: {_describe(spans)}")
        return inside[-1]
    return spans[-1]


def examples_span(artifact) -> Optional[int]:
    """Span of an ML Metadata Examples artifact. ExampleGen's driver records it as a custom
    property; the typed property is read too."""
    for props in (artifact.properties, artifact.custom_properties):
        if "span" in props:
            return props["span"].int_value
    return None


def artifact_span(artifact) -> int:
    """An Examples artifact's span. ExampleGen's driver records it as a custom property, which
    ``artifact.span`` (the typed property) does not read."""
    return examples_span(artifact.mlmd_artifact) or 0
