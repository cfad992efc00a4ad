"""Batch scoring: CSV in; CSV out with the id (or the input line number when the data set has
no id column), the probability and, when configured, a campaign segment.

Segments (names and thresholds from the config, thresholds overridable per run; Cartola's):

* ``churn_risk``: a PRO user (status column = 1) with probability < ``churn_threshold``;
* ``conversion_target``: a non-PRO user (status = 0) with probability > ``conversion_threshold``;
* ``neither``: everyone else.

With segments on, a file without the status column is refused rather than segmented by
guesswork. Rows are read in chunks, so a file larger than memory works, and written in input
order. A row that cannot be scored (wrong field count, unparseable or non-integral number,
missing required feature, id or status) goes to the rejects CSV with its 1-based physical
line number (the header is line 1) and the reason; the summary counts it. Outputs are written
under temporary names and renamed at the end.

Rows are read with :mod:`csv` rather than ``pandas.read_csv`` because only the former knows
each record's physical line (quoted newlines, blank and short lines); each chunk is then
parsed column-wise with pandas. A chunk of plain lines that would all be scored (no quotes,
blank lines or odd values: see :class:`~cartola.scoring.csv_input.FastParser`) is instead parsed
and checked with pyarrow, the next one in a thread while it is scored, and written
column-wise: the same files and summary, several times faster. ``fast=False`` turns that off.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from cartola.scoring.csv_input import (ASCII_SPACE, FALSE_WORDS, TRUE_WORDS, Chunk, CsvReadError,
                                 CsvRecords, FastChunk, csv_field, format_probabilities,
                                 output_bytes)
from cartola.serving.model import FLOAT32_MAX, RawFeature

PROBABILITY_COLUMN = "probability"
SEGMENT_COLUMN = "segment"
LINE_COLUMN = "line"
ALL_ROWS = "all"
DEFAULT_CHUNK_ROWS = 20_000
_MISSING = {"", "nan", "na", "n/a", "null", "none"}
_TRUE, _FALSE = set(TRUE_WORDS), set(FALSE_WORDS)


class ScoringError(RuntimeError):
    """The file as a whole cannot be scored (unreadable, columns missing, bad settings)."""


@dataclasses.dataclass
class ScoreSummary:  # pylint: disable=too-many-instance-attributes
    """What one scoring run wrote."""

    rows: int
    scored: int
    rejected: int
    by_segment: Dict[str, int]
    probability_sum: Dict[str, float]
    output: Path
    rejects: Path
    seconds: float

    def mean_probability(self, segment: str) -> float:
        """Mean PRO probability of a segment (NaN if empty)."""
        count = self.by_segment[segment]
        return self.probability_sum[segment] / count if count else math.nan

    def table(self) -> str:
        """The printed summary."""
        lines = [f"scored {self.scored:,} of {self.rows:,} rows in {self.seconds:.1f} s; "
                 f"rejected {self.rejected:,}"
                 + (f" (see {self.rejects})" if self.rejected else ""),
                 f"{'segment':<18} {'rows':>10} {'share':>7} {'mean p':>7}"]
        for segment in self.by_segment:
            count = self.by_segment[segment]
            share = count / self.scored if self.scored else 0.0
            mean = self.mean_probability(segment)
            lines.append(f"{segment:<18} {count:>10,} {share:>7.1%} "
                         + (f"{mean:>7.3f}" if count else f"{'-':>7}"))
        lines.append(f"output: {self.output}")
        return "\n".join(lines)


class LocalScorer:
    """Scores with a SavedModel loaded in this process, exactly as the server does."""

    def __init__(self, model):
        self.model = model
        self.features: Mapping[str, RawFeature] = model.features
        self.description = f"model {model.path}"

    @classmethod
    def from_serving_dir(cls, model_dir: Path, version: Optional[int] = None) -> "LocalScorer":
        """The given version under ``model_dir``, or the served one."""
        # pylint: disable=import-outside-toplevel
        from cartola.published.served import ServedVersionError, served_version
        from cartola.serving.model import ServedModel
        from cartola.published.versions import model_versions
        versions = model_versions(Path(model_dir))
        if not versions:
            raise ScoringError(f"no model version under {model_dir}; run the pipeline first")
        try:
            chosen = served_version(Path(model_dir)) if version is None else version
        except ServedVersionError as err:
            raise ScoringError(str(err)) from err
        if chosen not in versions:
            raise ScoringError(f"version {chosen} not under {model_dir} (found {versions})")
        return cls(ServedModel.load(Path(model_dir) / str(chosen), chosen))

    def predict(self, columns: Mapping[str, List[Any]]) -> Tuple[np.ndarray, Dict[int, str]]:
        """Probabilities of checked columns; no per-row failures once checked. Through the
        model's by-name signature where it gives the same numbers, else tf.Examples."""
        probabilities = self.model.predict_by_name(columns)
        if probabilities is None:
            probabilities = self.model.predict_columns(columns)
        return probabilities, {}


class HttpScorer:
    """Scores through a TF Serving REST API (this project's server or TF Serving)."""

    def __init__(self, client, batch_size: int = 1000):
        # pylint: disable=import-outside-toplevel
        from cartola.serving.client import ServingError
        self._error = ServingError
        self.client = client
        self.batch_size = batch_size
        try:
            inputs = client.raw_inputs()
        except ServingError as err:
            raise ScoringError(f"cannot read the model's inputs from the server: {err}") from err
        # predict_raw does not say which numbers are integers or required: the server decides.
        self.features = {name: RawFeature(name, "string" if dtype == "DT_STRING" else "float",
                                          required=False) for name, dtype in inputs.items()}
        self.description = f"server {client.model_path}"

    def predict(self, columns: Mapping[str, List[Any]]) -> Tuple[np.ndarray, Dict[int, str]]:
        """Probabilities by batch; a batch the server refuses (400) is retried row by row so
        only the bad rows are rejected, with the server's message."""
        rows = len(next(iter(columns.values())))
        result = np.full(rows, np.nan)
        errors: Dict[int, str] = {}
        for start in range(0, rows, self.batch_size):
            stop = min(start + self.batch_size, rows)
            try:
                result[start:stop] = self._call(columns, start, stop)
            except self._error as err:
                if err.status != 400:
                    raise ScoringError(f"scoring server failed: {err}") from err
                for i in range(start, stop):
                    try:
                        result[i] = self._call(columns, i, i + 1)[0]
                    except self._error as row_err:
                        if row_err.status != 400:
                            raise ScoringError(f"scoring server failed: {row_err}") from row_err
                        errors[i] = f"refused by the server: {row_err.message}"
        return result, errors

    def _call(self, columns, start, stop):
        return self.client.predict_columns({name: _plain(values[start:stop])
                                            for name, values in columns.items()})


def _stripped(column: pd.Series) -> pd.Series:
    """``column.str.strip()``; the column itself when no value has whitespace, which a few
    substring searches over the joined text tell far faster than stripping each value."""
    joined = "".join(column.to_numpy())
    if joined.isascii() and not any(space in joined for space in ASCII_SPACE):
        return column
    return column.str.strip()


def _append(reasons: pd.Series, mask, message: str, quoted: Optional[pd.Series] = None) -> None:
    """Add a reason to the masked rows: ``message``, followed by the row's value of
    ``quoted`` in quotes when given (built for those rows only)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    text = message + "'" + quoted[mask] + "'" if quoted is not None else message
    current = reasons[mask]
    reasons[mask] = np.where(current == "", text, current + "; " + text)


def _parse_numbers(text: pd.Series, decimal: str) -> Tuple[pd.Series, pd.Series]:
    """(numbers, missing) of a stripped column: NaN where missing or not a number. Missing
    tokens never parse as numbers, so only the unparsed rows are lowercased and looked up."""
    if decimal == ",":
        text = text.str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(text, errors="coerce")
    unparsed = numbers.isna().to_numpy()
    missing = pd.Series(False, index=text.index)
    if unparsed.any():
        missing[unparsed] = text[unparsed].str.lower().isin(_MISSING)
    return numbers, missing


def _check_chunk(frame: Mapping[str, pd.Series], features: Mapping[str, RawFeature],
                 id_column: str, status_column: str, decimal: str = "."):
    """Parse one chunk column-wise: (reasons, status 0/1, checked feature columns, stripped
    ids or None); an empty ``id_column`` or ``status_column`` is not checked."""
    index = next(iter(frame.values())).index
    reasons = pd.Series([""] * len(index), index=index, dtype=object)
    ids = None
    if id_column:
        ids = _stripped(frame[id_column])
        _append(reasons, ids == "", f"missing {id_column}")
    is_pro = pd.Series(False, index=index)
    if status_column:
        status = _stripped(frame[status_column])
        odd = ~status.isin(_TRUE | _FALSE).to_numpy()
        if odd.any():  # "TRUE", "False": lowercase only those
            status = status.copy()
            status[odd] = status[odd].str.lower()
        is_pro = status.isin(_TRUE)
        _append(reasons, ~(is_pro | status.isin(_FALSE)), f"{status_column} must be 0 or 1, got ",
                frame[status_column])
    columns: Dict[str, pd.Series] = {}
    for name, feature in features.items():
        text = _stripped(frame[name])
        if feature.kind == "string":
            missing = text == ""
            columns[name] = text.where(~missing, None)
        else:
            numbers, missing = _parse_numbers(text, decimal)
            _append(reasons, ~missing & numbers.isna(), f"{name} is not a number: ", frame[name])
            infinite = np.isinf(numbers)
            _append(reasons, infinite, f"{name} is not finite")
            numbers = numbers.where(~infinite)
            if feature.kind == "int":
                _append(reasons, numbers.notna() & ((numbers % 1 != 0) | (numbers.abs() >= 2**63)),
                        f"{name} must be an integer, got ", frame[name])
            else:
                _append(reasons, numbers.abs() > FLOAT32_MAX, f"{name} is out of float32 range")
            columns[name] = numbers
        if feature.required:
            _append(reasons, missing, f"{name} is required but missing")
    return reasons, is_pro.to_numpy(), columns, ids


def _values(series: pd.Series, feature: RawFeature) -> np.ndarray:
    """A checked column as the model's encoder takes it: float64 with NaN for numbers, objects
    with None for strings (missing)."""
    return series.to_numpy(dtype=object if feature.kind == "string" else float)


def _plain(values: Sequence[Any]) -> List[Any]:
    """A checked column as JSON values, None for missing."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in array.tolist()]
    return array.tolist()


@dataclasses.dataclass(frozen=True)
class SegmentRule:
    """Who is a campaign target: see the module docstring. ``names``: positives below
    ``churn_threshold``, negatives above ``conversion_threshold``, everyone else."""

    status_column: str
    churn_threshold: float
    conversion_threshold: float
    names: Tuple[str, str, str] = ("churn_risk", "conversion_target", "neither")

    def __post_init__(self):
        for name in ("churn_threshold", "conversion_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ScoringError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if len(set(self.names)) != 3:
            raise ScoringError(f"segment names must be three distinct names, got {self.names}")

    def assign(self, probabilities: np.ndarray, is_pro: np.ndarray) -> np.ndarray:
        """Segment of each row."""
        return np.select([is_pro & (probabilities < self.churn_threshold),
                          ~is_pro & (probabilities > self.conversion_threshold)],
                         list(self.names[:2]), self.names[2])


def default_rejects_path(output: Path) -> Path:
    """``scores.csv`` -> ``scores.rejects.csv``."""
    output = Path(output)
    return output.with_name(output.stem + ".rejects" + (output.suffix or ".csv"))


def _columns(chunk: Chunk, header: List[str], names: List[str]) -> Dict[str, pd.Series]:
    """The named columns of a chunk's records as text; the others are never read."""
    index = pd.RangeIndex(len(chunk.records))
    return {name: pd.Series([record[position] for record in chunk.records], index=index,
                            dtype=object)
            for name, position in ((n, header.index(n)) for n in dict.fromkeys(names))}


def _score_chunk(chunk: Chunk, header: List[str], scorer, rule: Optional[SegmentRule],
                 id_column: str, decimal: str = "."):
    """(ids, probabilities, segments, scored mask, reasons) of one chunk; the ids are line
    numbers without an id column, the segments ``ALL_ROWS`` without a rule."""
    status_column = rule.status_column if rule else ""
    rows = len(chunk.records)
    reasons, is_pro, checked, ids = _check_chunk(
        _columns(chunk, header, [n for n in (id_column, status_column) if n]
                 + list(scorer.features)), scorer.features, id_column, status_column, decimal)
    valid = np.flatnonzero((reasons == "").to_numpy())
    probabilities = np.full(rows, np.nan)
    if len(valid) > 0:
        columns = {name: _values(checked[name].iloc[valid] if len(valid) < rows
                                 else checked[name], feature)
                   for name, feature in scorer.features.items()}
        predicted, errors = scorer.predict(columns)
        probabilities[valid] = predicted
        for position, message in errors.items():
            reasons.iloc[valid[position]] = message
    ids = ids.to_numpy() if ids is not None else np.asarray(chunk.lines).astype(str)
    segments = (rule.assign(probabilities, np.asarray(is_pro)) if rule
                else np.full(rows, ALL_ROWS))
    return ids, probabilities, segments, (reasons == "").to_numpy(), reasons.to_numpy()


def _checked_paths(source, output, rejects, chunk_rows: int) -> Tuple[Path, Path, Path]:
    source, output = Path(source), Path(output)
    rejects = Path(rejects) if rejects else default_rejects_path(output)
    if chunk_rows < 1:
        raise ScoringError("chunk_rows must be >= 1")
    if not source.is_file():
        raise ScoringError(f"input file not found: {source}")
    if output.resolve() in (source.resolve(), rejects.resolve()):
        raise ScoringError("the output must not overwrite the input or the rejects file")
    output.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    return source, output, rejects


def _write_all(records: CsvRecords, scorer, rule: Optional[SegmentRule], id_column: str,
               handles, summary: ScoreSummary, progress_bar, decimal: str = ".") -> None:
    """Score every chunk; scored rows to the first file, rejects to the second."""
    out_csv, rej_csv = csv.writer(handles[0]), csv.writer(handles[1])
    out_csv.writerow([id_column or LINE_COLUMN, PROBABILITY_COLUMN]
                     + ([SEGMENT_COLUMN] if rule else []))
    rej_csv.writerow([LINE_COLUMN] + ([id_column] if id_column else []) + ["reason"])
    for chunk in records:
        if isinstance(chunk, FastChunk):
            summary.rows += chunk.rows
            _write_fast_chunk(chunk, scorer, rule, handles[0], summary, records.bad)
        else:
            summary.rows += len(chunk.records)
            _write_chunk(chunk, records, (scorer, rule, id_column, decimal), out_csv, summary)
        summary.rejected += _flush_rejects(rej_csv, records.bad, bool(id_column))
        progress_bar.update(records.bytes_read - progress_bar.n)
        progress_bar.set_postfix(rows=f"{summary.rows + records.malformed:,}", refresh=False)
    summary.rejected += _flush_rejects(rej_csv, records.bad, bool(id_column))
    progress_bar.update(records.bytes_read - progress_bar.n)
    summary.rows += records.malformed  # records that never reached a chunk
    summary.scored = summary.rows - summary.rejected


def _write_chunk(chunk: Chunk, records: CsvRecords, setting, out_csv,
                 summary: ScoreSummary) -> None:
    """Score a chunk of records read row-wise; its rejects to ``records.bad``."""
    scorer, rule, id_column, decimal = setting
    ids, probabilities, segment, scored, reasons = _score_chunk(
        chunk, records.header, scorer, rule, id_column, decimal)
    rows = np.flatnonzero(scored)
    out_csv.writerows(zip(ids[rows].tolist(),
                          [f"{p:.6f}" for p in probabilities[rows].tolist()],
                          *([segment[rows].tolist()] if rule else [])))
    for name in summary.by_segment:
        _add_probabilities(summary, name, probabilities[rows][segment[rows] == name])
    records.bad.extend((chunk.lines[i], ids[i], reasons[i]) for i in np.flatnonzero(~scored))


def _write_fast_chunk(chunk: FastChunk, scorer, rule: Optional[SegmentRule], out_handle,
                      summary: ScoreSummary, bad: List[Tuple[int, str, str]]) -> None:
    """Score a fast-path chunk and write it column-wise: the same bytes and sums as
    :func:`_write_chunk`."""
    probabilities, errors = scorer.predict(chunk.columns)
    probabilities = np.asarray(probabilities, dtype=float)
    ids = chunk.ids
    if errors:
        refused = sorted(errors)
        bad.extend((chunk.first_line + i, ids[i].as_py(), errors[i]) for i in refused)
        rows = np.setdiff1d(np.arange(chunk.rows), refused)
        probabilities, ids = probabilities[rows], ids.take(pa.array(rows))
        is_pro = chunk.is_pro[rows] if chunk.is_pro is not None else None
    else:
        is_pro = chunk.is_pro
    if rule:
        codes = np.select([is_pro & (probabilities < rule.churn_threshold),
                           ~is_pro & (probabilities > rule.conversion_threshold)], [0, 1], 2)
        names = pa.array([csv_field(name) + "\r\n" for name in rule.names])
        columns = [ids, format_probabilities(probabilities), names.take(pa.array(codes))]
        for code, name in enumerate(rule.names):
            _add_probabilities(summary, name, probabilities[codes == code])
    else:
        columns = [ids, format_probabilities(probabilities, "\r\n")]
        _add_probabilities(summary, ALL_ROWS, probabilities)
    out_handle.flush()
    out_handle.buffer.write(output_bytes(columns))


def _add_probabilities(summary: ScoreSummary, segment: str, probabilities: np.ndarray) -> None:
    summary.by_segment[segment] += len(probabilities)
    # cumsum adds in row order, as a running total would: the same float sum.
    summary.probability_sum[segment] = float(np.cumsum(
        np.concatenate([[summary.probability_sum[segment]], probabilities]))[-1])


def score_csv(  # pylint: disable=too-many-arguments,too-many-locals
        source: os.PathLike, output: os.PathLike, scorer, rule: Optional[SegmentRule],
              *, id_column: str, chunk_rows: int = DEFAULT_CHUNK_ROWS,
              rejects: Optional[os.PathLike] = None, progress: bool = True,
              delimiter: str = ",", decimal: str = ".", fast: bool = True) -> ScoreSummary:
    """Score ``source`` into ``output`` (and the rejects CSV); returns the summary. No
    ``rule``: no segments; empty ``id_column``: rows are named by their line number.
    ``delimiter`` and ``decimal`` describe the input file (the output is plain CSV).
    ``fast=False`` reads every chunk row-wise (the fast path gives the same files)."""
    source, output, rejects = _checked_paths(source, output, rejects, chunk_rows)
    started = time.monotonic()
    try:
        records = CsvRecords(source, chunk_rows, id_column, delimiter)
    except CsvReadError as err:
        raise ScoringError(str(err)) from err
    with records:
        _check_header(records.header, scorer.features, id_column,
                      rule.status_column if rule else "", source)
        if fast:
            records.use_fast_path(scorer.features, id_column,
                                  rule.status_column if rule else "", decimal)
        summary = _score_records(records, (source, output, rejects), scorer, rule, id_column,
                                 progress, decimal)
    summary.seconds = time.monotonic() - started
    return summary


def _score_records(  # pylint: disable=too-many-arguments
        records: CsvRecords, paths: Tuple[Path, Path, Path], scorer,
        rule: Optional[SegmentRule], id_column: str, progress: bool,
        decimal: str) -> ScoreSummary:
    """Write the output and rejects files under temporary names, then rename them."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    source, output, rejects = paths
    segments = rule.names if rule else (ALL_ROWS,)
    summary = ScoreSummary(rows=0, scored=0, rejected=0,
                           by_segment={segment: 0 for segment in segments},
                           probability_sum={segment: 0.0 for segment in segments},
                           output=output, rejects=rejects, seconds=0.0)
    tmp_out = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp_rej = rejects.with_name(f".{rejects.name}.{os.getpid()}.tmp")
    progress_bar = tqdm(total=source.stat().st_size, unit="B", unit_scale=True,
                        file=sys.stderr, disable=not progress, desc=f"scoring {source.name}")
    try:
        with open(tmp_out, "w", newline="", encoding="utf-8") as out_handle, \
                open(tmp_rej, "w", newline="", encoding="utf-8") as rej_handle:
            _write_all(records, scorer, rule, id_column, (out_handle, rej_handle), summary,
                       progress_bar, decimal)
        os.replace(tmp_out, output)
        os.replace(tmp_rej, rejects)
    finally:
        progress_bar.close()
        for tmp in (tmp_out, tmp_rej):
            if tmp.exists():
                tmp.unlink()
    return summary


def _flush_rejects(writer, bad: List[Tuple[int, str, str]], with_id: bool = True) -> int:
    """Write pending rejects in line order; returns how many."""
    count = len(bad)
    for line, row_id, reason in sorted(bad):
        writer.writerow([line, row_id, reason] if with_id else [line, reason])
    bad.clear()
    return count


def _check_header(header: Sequence[str], features: Mapping[str, RawFeature], id_column: str,
                  status_column: str, source: Path) -> None:
    duplicated = sorted({h for h in header if list(header).count(h) > 1})
    if duplicated:
        raise ScoringError(f"{source}: duplicated column(s) {duplicated}")
    needed = [name for name in (id_column, status_column) if name] + list(features)
    missing = [name for name in needed if name not in header]
    if missing:
        hint = (" (the status column says who is PRO today; name another with "
                "--status-column)" if status_column in missing else "")
        raise ScoringError(f"{source}: missing column(s) {missing}{hint}")
