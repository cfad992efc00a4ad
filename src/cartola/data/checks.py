"""File checks before any TFX work: each problem is one ``file:line: problem`` line.

CsvExampleGen fails on a malformed file only after Beam has started (30-40 s), inside a stack
trace that names no file or line. This module reads every input file once, streaming (memory
stays flat on millions of rows), and stops at the first problem: not UTF-8 (a BOM is fine),
the wrong delimiter or decimal mark, an empty or header-only file, duplicated or empty
column names, rows with another field count than the header, and files of one folder whose
headers differ (or differ only in order). A file that is not text at all (an archive, a
spreadsheet, a database file) is refused from its first bytes, before any parsing. With a label
coding (:mod:`cartola.data.labels`) every row's label must be one of its two values, and a span
must hold enough rows for the split. Other column types and values are ExampleValidator's job,
against the curated schema.
"""
from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from cartola.data.labels import LabelCoding
from cartola.errors import InputDataError

BOM = codecs.BOM_UTF8
# Delimiters a spreadsheet export may use instead of the configured one.
CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
# A number written with a decimal comma ("3,5", "-0,25").
DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+\s*$")
MAX_LISTED = 5
DECIMAL_SAMPLE_ROWS = 1000
# Bytes read to tell text from binary. Text exports hold no NUL byte and almost no other
# control characters; one line longer than this is no CSV row a person exported either.
SNIFF_BYTES = 1 << 16
MAX_CONTROL_SHARE = 0.01
MAX_LINE_BYTES = 1 << 20
_CONTROL = bytes(set(range(32)) - {9, 10, 12, 13})


def check_text(path: Path) -> None:
    """Raise InputDataError when ``path`` is not CSV text, from its first bytes: NUL bytes,
    control characters, or no line break in the first MB (whatever the bytes are, the answer
    comes before any parsing, so in well under a second)."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
        if head.startswith(b"\x1f\x8b"):
            raise InputDataError(f"{path}: not a CSV text file (gzip-compressed: decompress "
                                 "it first, e.g. gunzip)")
        controls = len(head) - len(head.translate(None, _CONTROL))
        if b"\x00" in head or (head and controls / len(head) > MAX_CONTROL_SHARE):
            raise InputDataError(f"{path}: not a CSV text file ({controls:,} control bytes in "
                                 f"its first {len(head):,}: binary data, an archive or a "
                                 "spreadsheet; export it as CSV)")
        if b"\n" not in head and b"\r" not in head:
            head += handle.read(MAX_LINE_BYTES - len(head))
            if len(head) >= MAX_LINE_BYTES and b"\n" not in head and b"\r" not in head:
                raise InputDataError(f"{path}: not a CSV text file (no line break in its first "
                                     f"{MAX_LINE_BYTES >> 20} MB)")


def check_text_inputs(data: Path) -> None:
    """:func:`check_text` on a CSV file, or on every ``*.csv`` in a folder and its span
    folders: the quick refusal of bytes that are no text, before anything heavier loads."""
    files = [data] if data.is_file() else sorted(data.glob("*.csv")) + sorted(
        data.glob("*/*.csv")) if data.is_dir() else []
    for path in files:
        check_text(path)


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


def check_file(path: Path, delimiter: str = ",", decimal: str = ".",
               label: Optional[LabelCoding] = None) -> List[str]:
    """Read one CSV file through; return its header or raise InputDataError."""
    return read_file(path, delimiter, decimal, label)[0]


def read_file(path: Path, delimiter: str = ",", decimal: str = ".",
              label: Optional[LabelCoding] = None) -> Tuple[List[str], int]:
    """Read one CSV file through; return (header, rows) or raise InputDataError."""
    check_text(path)
    lines = _decoded_lines(path)
    header = _header(path, lines, delimiter)
    label_index = (header.index(label.column) if label is not None and label.active
                   and label.column in header else None)
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
            elif label_index is not None and label.problem(record[label_index]):
                raise InputDataError(f"{path}:{line}: {label.problem(record[label_index])}")
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
    return header, rows


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


def check_input_dir(data_dir: Path, delimiter: str = ",", decimal: str = ".",
                    label: Optional[LabelCoding] = None, min_rows: int = 0) -> List[Path]:
    """Check every ``*.csv`` file CsvExampleGen will read; return them, or raise
    InputDataError naming the file, the line and the problem. ``min_rows``: the fewest rows
    the folder may hold in all (see :func:`min_rows`)."""
    if not data_dir.is_dir():
        raise InputDataError(f"input folder not found: {data_dir}")
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise InputDataError(f"no *.csv file in input folder {data_dir}")
    first_header: List[str] = []
    total = 0
    for path in files:
        header, rows = read_file(path, delimiter, decimal, label)
        total += rows
        if path == files[0]:
            first_header = header
            continue
        problem = compare_headers(files[0], first_header, path, header)
        if problem:
            raise InputDataError(problem)
    if total < min_rows:
        where = files[0] if len(files) == 1 else data_dir
        raise InputDataError(f"{where}: {total:,} data rows; the pipeline needs at least "
                             f"{min_rows:,} (its eval split must hold the schema's minimum "
                             "of examples per split)")
    return files


def min_rows(min_per_split: int, train_buckets: int, eval_buckets: int) -> int:
    """The fewest rows a span can hold for the hash split to give each split
    ``min_per_split`` examples: the smaller split's share, with a tenth more for the hash
    split's spread."""
    if min_per_split <= 0:
        return 0
    share = min(train_buckets, eval_buckets) / (train_buckets + eval_buckets)
    return int(-(-min_per_split * 1.1 // share))
