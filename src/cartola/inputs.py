"""Cheap checks of an input folder before a run, so the obvious problems get a clear error
naming the file instead of a Beam stack trace from CsvExampleGen."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List

from cartola.errors import InputDataError


def check_input_dir(data_dir: Path) -> List[Path]:
    """Return the CSV files CsvExampleGen will read; raise InputDataError naming the problem.

    Column names, types and values are ExampleValidator's job (against the curated schema);
    this only rejects what would stop CsvExampleGen itself: no folder, no CSV file, an empty
    file, a file without a header, or files whose headers differ.
    """
    if not data_dir.is_dir():
        raise InputDataError(f"input folder not found: {data_dir}")
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise InputDataError(f"no *.csv file in input folder {data_dir}")
    headers = {}
    for path in files:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
            if not header or not any(name.strip() for name in header):
                raise InputDataError(f"{path}: empty file (no header row)")
            if next(handle, None) is None:
                raise InputDataError(f"{path}: header only, no data rows")
        headers[path] = header
    first = files[0]
    for path, header in headers.items():
        if header != headers[first]:
            raise InputDataError(
                f"{path}: header differs from {first.name}: "
                f"{sorted(set(header) ^ set(headers[first]))}")
    return files
