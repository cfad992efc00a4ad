"""File checks before any TFX work: each problem is one ``file:line: problem`` line.

CsvExampleGen fails on a malformed file only after Beam has started (30-40 s), inside a stack
trace that names no file or line. This module reads every input file once, streaming (memory
stays flat on millions of rows), and stops at the first problem: not UTF-8 (a BOM is fine),
the wrong delimiter or decimal mark, an empty or header-only file, duplicated or empty
column names, rows with another field count than the header, and files of one folder whose
headers differ (or differ only in order). Column types and values are ExampleValidator's job,
against the curated schema.
"""
from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from cartola.errors import InputDataError

BOM = codecs.BOM_UTF8
# Delimiters a spreadsheet export may use instead of the configured one.
CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
# A number written with a decimal comma ("3,5", "-0,25").
DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+\s*$")
MAX_LISTED = 5
DECIMAL_SAMPLE_ROWS = 1000


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text (BOM dropped); a line that is not UTF-8 raises
    InputDataError with its number and the offending byte."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                guess = ""
                try:
                    raw.decode("cp1252")
                    guess = " (it reads as Latin-1/Windows-1252)"
                except UnicodeDecodeError:
                    pass
                raise InputDataError(
                    f"{path}:{number}: not UTF-8: byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}{guess}; save the file as UTF-8, e.g. "
                    f"iconv -f cp1252 -t utf-8") from None


def _header(path: Path, lines: Iterator[str], delimiter: str) -> List[str]:
    first = next(lines, None)
    if first is None or not first.strip():
        raise InputDataError(f"{path}:1: empty file (no header row)")
    header = [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]
    if len(header) == 1:
        for other in CANDIDATE_DELIMITERS:
            if other != delimiter and other in first:
                count = len(next(csv.reader([first], delimiter=other)))
                raise InputDataError(
                    f"{path}:1: the header is one column with delimiter {delimiter!r} but "
                    f"{count} columns with {other!r}: set csv_delimiter = {other!r} in the "
                    f"config (and csv_decimal = ',' if numbers use a decimal comma)")
    empty = [i + 1 for i, name in enumerate(header) if not name]
    if empty:
        raise InputDataError(f"{path}:1: column {empty[0]} of the header has no name")
    seen = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise InputDataError(f"{path}:1: duplicated column name {name!r} (columns "
                                 f"{seen[name]} and {position})")
        seen[name] = position
    return header


def file_header(path: Path, delimiter: str = ",") -> List[str]:
    """Column names of a CSV file (its first line)."""
    return _header(path, _decoded_lines(path), delimiter)


def check_file(path: Path, delimiter: str = ",", decimal: str = ".") -> List[str]:
    """Read one CSV file through; return its header or raise InputDataError."""
    lines = _decoded_lines(path)
    header = _header(path, lines, delimiter)
    reader = csv.reader(lines, delimiter=delimiter)
    ragged: List[Tuple[int, int]] = []  # (line, field count)
    rows = 0
    last_line = 1
    try:
        for record in reader:
            line = last_line + 1
            last_line = reader.line_num + 1  # the header line was read before the reader
            if not record:
                continue  # a blank line holds no row; CsvExampleGen skips it too
            rows += 1
            if len(record) != len(header):
                ragged.append((line, len(record)))
                if len(ragged) >= MAX_LISTED:
                    break
            elif decimal == "." and delimiter != "," and rows <= DECIMAL_SAMPLE_ROWS:
                _check_decimal_mark(path, line, header, record)
    except csv.Error as err:
        raise InputDataError(f"{path}:{last_line + 1}: unreadable CSV: {err}") from None
    if ragged:
        listed = ", ".join(f"{line} ({count})" for line, count in ragged)
        raise InputDataError(
            f"{path}:{ragged[0][0]}: {ragged[0][1]} fields where the header has {len(header)}"
            f" (a quote left open, a missing value without its delimiter, or another "
            f"delimiter); lines with another field count: {listed}"
            + (" and maybe more" if len(ragged) >= MAX_LISTED else ""))
    if rows == 0:
        raise InputDataError(f"{path}:2: header only, no data rows")
    return header


def _check_decimal_mark(path: Path, line: int, header: Sequence[str],
                        record: Sequence[str]) -> None:
    for name, value in zip(header, record):
        if DECIMAL_COMMA.match(value):
            raise InputDataError(
                f"{path}:{line}: column {name!r} holds {value!r}, a number with a decimal "
                f"comma: set csv_decimal = ',' in the config (or export with '.' decimals)")


def compare_headers(first: Path, first_header: Sequence[str], path: Path,
                    header: Sequence[str]) -> Optional[str]:
    """Why ``path``'s header cannot be read with ``first``'s, or None."""
    if list(header) == list(first_header):
        return None
    missing = [name for name in first_header if name not in header]
    extra = [name for name in header if name not in first_header]
    if not missing and not extra:
        position = next(i for i, (a, b) in enumerate(zip(first_header, header)) if a != b)
        return (f"{path}:1: same columns as {first.name} in another order (column "
                f"{position + 1} is {header[position]!r} here, {first_header[position]!r} "
                f"there); CsvExampleGen reads one column order per folder: reorder the file")
    parts = []
    if missing:
        parts.append(f"lacks {missing}")
    if extra:
        parts.append(f"has extra {extra}")
    return f"{path}:1: header differs from {first.name}: {' and '.join(parts)}"


def check_input_dir(data_dir: Path, delimiter: str = ",", decimal: str = ".") -> List[Path]:
    """Check every ``*.csv`` file CsvExampleGen will read; return them, or raise
    InputDataError naming the file, the line and the problem."""
    if not data_dir.is_dir():
        raise InputDataError(f"input folder not found: {data_dir}")
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise InputDataError(f"no *.csv file in input folder {data_dir}")
    first_header: List[str] = []
    for path in files:
        header = check_file(path, delimiter, decimal)
        if path == files[0]:
            first_header = header
            continue
        problem = compare_headers(files[0], first_header, path, header)
        if problem:
            raise InputDataError(problem)
    return files
