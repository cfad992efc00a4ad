"""Span resolution: patterns, dates, latest, data intervals, and the errors that name a span."""
from __future__ import annotations

import datetime as dt

import pytest

from cartola.data import spans
from cartola.errors import InputDataError

HEADER = "id,x,pro_target\n"
PATTERN = "snapshot={YYYY}-{MM}-{DD}/*.csv"


def _span(root, name, text=HEADER + "1,2,0\n"):
    folder = root / name
    folder.mkdir(parents=True)
    if text is not None:
        (folder / "part.csv").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(name="weekly")
def fixture_weekly(tmp_path):
    """Three weekly span folders, a file and a folder that are not spans."""
    for day in ("2026-11-02", "2026-11-09", "2026-11-16"):
        _span(tmp_path, f"snapshot={day}")
    (tmp_path / "notes.txt").write_text("not a span", encoding="utf-8")
    _span(tmp_path, "snapshot=latest")  # does not match the pattern
    return tmp_path


def test_date_span_numbers_match_tfx():
    from tfx.components.example_gen import utils  # pylint: disable=import-outside-toplevel
    day = dt.date(2026, 11, 16)
    assert spans.date_to_span(day) == utils.date_to_span_number(2026, 11, 16)
    assert spans.span_to_date(spans.date_to_span(day)) == day


def test_list_and_latest(weekly):
    found = spans.list_spans(weekly, PATTERN)
    assert [span.name for span in found] == ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert [b.number - a.number for a, b in zip(found, found[1:])] == [7, 7]
    latest = spans.resolve_span(weekly, PATTERN)
    assert (latest.name, latest.folder, latest.flat) == (
        "2026-11-16", weekly / "snapshot=2026-11-16", False)


def test_requested_and_interval(weekly):
    assert spans.resolve_span(weekly, PATTERN, "2026-11-09").name == "2026-11-09"
    week = (dt.datetime(2026, 11, 8, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 11, 15, tzinfo=dt.timezone.utc))
    assert spans.resolve_span(weekly, PATTERN, interval=week).name == "2026-11-09"
    # The interval's end is exclusive; its start inclusive.
    assert spans.resolve_span(weekly, PATTERN, interval=(dt.date(2026, 11, 2),
                                                         dt.date(2026, 11, 9))).name == "2026-11-02"
    with pytest.raises(InputDataError, match=r"no span dated in the run's data interval "
                                             r"\[2026-10-01, 2026-10-08\)"):
        spans.resolve_span(weekly, PATTERN, interval=(dt.date(2026, 10, 1), dt.date(2026, 10, 8)))


def test_numbered_spans(tmp_path):
    for number in (1, 2, 10):
        _span(tmp_path, f"span-{number}")
    pattern = "span-{SPAN}/*.csv"
    assert spans.resolve_span(tmp_path, pattern).number == 10  # numeric, not lexical order
    assert spans.resolve_span(tmp_path, pattern, "2").folder == tmp_path / "span-2"
    with pytest.raises(InputDataError, match="expected a span number"):
        spans.resolve_span(tmp_path, pattern, "2026-11-02")


def test_flat_folder_is_one_span(tmp_path):
    (tmp_path / "users.csv").write_text(HEADER + "1,2,0\n", encoding="utf-8")
    span = spans.resolve_span(tmp_path, PATTERN)
    assert (span.number, span.folder, span.flat, span.name) == (0, tmp_path, True, "flat folder")
    with pytest.raises(InputDataError, match="span 2026-11-02 requested, but .* has no span"):
        spans.resolve_span(tmp_path, PATTERN, "2026-11-02")


def test_missing_empty_and_changed_header_name_the_span(weekly):
    with pytest.raises(InputDataError, match=r"span 2026-11-23 not found under .*; available: "
                                             r"3 spans, 2026-11-02 to 2026-11-16"):
        spans.resolve_span(weekly, PATTERN, "2026-11-23")
    with pytest.raises(InputDataError, match="expected a date YYYY-MM-DD"):
        spans.resolve_span(weekly, PATTERN, "last week")
    _span(weekly, "snapshot=2026-11-23", text=None)
    with pytest.raises(InputDataError, match=r"span 2026-11-23 \(.*snapshot=2026-11-23\): empty"):
        spans.resolve_span(weekly, PATTERN)
    (weekly / "snapshot=2026-11-23" / "part.csv").write_text("id,y,pro_target\n1,2,0\n",
                                                             encoding="utf-8")
    with pytest.raises(InputDataError, match=r"span 2026-11-23: .*part.csv:1: header differs "
                                             r"from part.csv: lacks \['x'\] and has extra "
                                             r"\['y'\] \(span 2026-11-16\)"):
        spans.resolve_span(weekly, PATTERN)


def test_bad_folders_and_patterns(tmp_path):
    _span(tmp_path, "snapshot=2026-02-30")
    with pytest.raises(InputDataError, match="not a date"):
        spans.list_spans(tmp_path, PATTERN)
    for pattern, message in (("*.csv", "expected <folder"),
                             ("snapshot/{SPAN}.csv", "folder part"),
                             ("s={YYYY}-{MM}/*.csv", "needs"),
                             ("s={SPAN}-{YYYY}-{MM}-{DD}/*.csv", "not both")):
        with pytest.raises(ValueError, match=message):
            spans.split_pattern(pattern)


def test_same_span_twice_is_an_error(tmp_path):
    _span(tmp_path, "span-1")
    _span(tmp_path, "span-01")
    with pytest.raises(InputDataError, match="same span 1"):
        spans.list_spans(tmp_path, "span-{SPAN}/*.csv")


def test_find_span_locates_an_ingested_span_without_checks(tmp_path):
    pattern = "snapshot={YYYY}-{MM}-{DD}/*.csv"
    for day in ("2026-11-02", "2026-11-09"):
        (tmp_path / f"snapshot={day}").mkdir()
    found = spans.find_span(tmp_path, pattern, spans.date_to_span(dt.date(2026, 11, 9)))
    assert found.folder == tmp_path / "snapshot=2026-11-09" and not found.flat
    assert spans.find_span(tmp_path, pattern, spans.date_to_span(dt.date(2026, 11, 16))) is None
    flat = tmp_path / "flat"
    flat.mkdir()
    assert spans.find_span(flat, pattern, 0).flat and spans.find_span(flat, pattern, 3) is None
    assert spans.find_span(tmp_path / "gone", pattern, 0) is None
