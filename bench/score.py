"""Benchmark: batch scoring against the bare ``serving_default`` signature, on the same rows.

Builds ``--rows`` rows by repeating the configured data's latest span file, then measures in
one run, in batches of ``--batch-rows`` rows (the scoring chunk size):

* (a) the full ``cartola score`` path: :func:`cartola.scoring.score_csv` with a
  :class:`~cartola.scoring.LocalScorer`, CSV in -> CSV out in a temporary folder (plain
  rows like these take its fast path: chunks parsed, checked and written with pyarrow);
* (b) :meth:`ServedModel.predict_columns` on prebuilt checked columns (numpy, as (a) passes
  them): encode tf.Examples, call the signature;
* (c) the bare signature on prebuilt serialized examples;
* (d) :meth:`ServedModel.predict_by_name` on the same checked columns: the ``predict_raw``
  signature fed tensors by name, no tf.Example written or parsed (what (a) calls now);

then the tf.Example encoders alone: the row-by-row one batch scoring used before (kept here
only for this comparison), the column-wise one on numpy columns and on Python lists (the
server's form), and tfx_bsl's ``RecordBatchToExamples`` on prebuilt record batches. The
batches of (b) and (c), and of the encoders, are interleaved so that the machine's load
weighs on each alike; ``--repeat`` keeps the best of several passes.

    CARTOLA_HOME=... python bench/score.py [--model-dir serving_model/cartola_pro]
        [--rows 1000000] [--batch-rows 20000] [--repeat 1]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence

import numpy as np
import pandas as pd

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
from cartola.scoring import batch as scoring
from cartola.config import load_config
from cartola.data.spans import latest_folder
from cartola.serving.model import RawFeature, ServedModel, build_examples
from cartola.codec.wire import varint
from cartola.published.versions import model_versions


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def row_by_row_examples(columns: Mapping[str, Sequence[Any]],
                        features: Mapping[str, RawFeature]) -> List[bytes]:
    """The encoder batch scoring used before: wire bytes joined row by row in Python."""
    keys = {name: _field(b"\x0a", name.encode("utf-8")) for name in columns}
    float_prefix = {name: _field(b"\x0a", key + b"\x12\x08\x12\x06\x0a\x04" + b"\0" * 4)[:-4]
                    for name, key in keys.items()}
    kinds = {name: features[name].kind for name in columns}
    pack = struct.Struct("<f").pack
    serialized = []
    for i in range(len(next(iter(columns.values())))):
        parts = []
        for name, values in columns.items():
            value = values[i]
            if value is None:
                continue
            if kinds[name] == "float":
                parts.append(float_prefix[name] + pack(value))
            elif kinds[name] == "int":
                parts.append(_field(b"\x0a", keys[name] + _field(
                    b"\x12", _field(b"\x1a", _field(b"\x0a", varint(value))))))
            else:
                parts.append(_field(b"\x0a", keys[name] + _field(
                    b"\x12", _field(b"\x0a", _field(b"\x0a", value.encode("utf-8"))))))
        serialized.append(_field(b"\x0a", b"".join(parts)) if parts else b"")
    return serialized


def _span_file(config) -> Path:
    files = sorted(latest_folder(config.data_dir, config.span_pattern).glob("*.csv"))
    if not files:
        raise SystemExit(f"bench: no CSV file in the latest span under {config.data_dir}")
    return files[0]


def _write_rows(span_file: Path, target: Path, count: int, delimiter: str) -> None:
    """``count`` records of ``span_file``, repeated, under its header."""
    with open(span_file, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header, records = next(reader), list(reader)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(itertools.islice(itertools.cycle(records), count))


def _checked_columns(span_file: Path, features: Mapping[str, RawFeature], count: int,
                     config) -> Dict[str, np.ndarray]:
    """The span's feature columns, repeated to ``count`` rows, as batch scoring checks them:
    float64 with NaN (numbers), objects with None (strings)."""
    frame = pd.read_csv(span_file, usecols=list(features), sep=config.csv_delimiter,
                        decimal=config.csv_decimal,
                        dtype={n: str for n, f in features.items() if f.kind == "string"})
    columns = {}
    for name, feature in features.items():
        if feature.kind == "string":
            values = frame[name].astype(object).where(frame[name].notna(), None).to_numpy()
        else:
            values = frame[name].to_numpy(dtype=float)
        columns[name] = np.resize(values, count)
    return columns


def _plain(values: np.ndarray, feature: RawFeature) -> List[Any]:
    """A numpy column as the server's checked lists (Python values, None = missing)."""
    if feature.kind == "string":
        return values.tolist()
    cast = int if feature.kind == "int" else float
    return [None if math.isnan(v) else cast(v) for v in values.tolist()]


def _record_batch(columns: Mapping[str, np.ndarray], features: Mapping[str, RawFeature]):
    """A pyarrow RecordBatch of one-value lists (null = missing), tfx_bsl's input."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    arrays = []
    for name, values in columns.items():
        kind = features[name].kind
        present = (np.array([v is not None for v in values], dtype=bool) if kind == "string"
                   else ~np.isnan(values))
        offsets = pa.array(np.concatenate([[0], np.cumsum(present)]).astype(np.int32))
        if kind == "string":
            flat = pa.array([v.encode("utf-8") for v in values[present]], pa.binary())
        else:
            flat = pa.array(values[present].astype(np.float32 if kind == "float" else np.int64))
        arrays.append(pa.ListArray.from_arrays(offsets, flat, mask=pa.array(~present)))
    return pa.RecordBatch.from_arrays(arrays, list(columns))


def _rates(paths: Dict[str, Sequence[Callable[[], object]]], rows: int,
           repeat: int) -> Dict[str, float]:
    """Rows per second of each path (one call per batch; best of ``repeat`` passes). Batches
    are interleaved across paths, so a change in the machine's load hits every path alike;
    one untimed call of each path first."""
    for calls in paths.values():
        calls[0]()
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeat):
        spent = dict.fromkeys(paths, 0.0)
        for batch in range(len(next(iter(paths.values())))):
            for name, calls in paths.items():
                started = time.perf_counter()
                calls[batch]()
                spent[name] += time.perf_counter() - started
        best = {name: min(best[name], spent[name]) for name in paths}
    return {name: rows / seconds for name, seconds in best.items()}


def _slices(rows: int, size: int) -> List[slice]:
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def _measure_paths(model, args, csv_file: Path, columns, examples) -> tuple:
    """{path: rows/s} of (a), (b), (c) and max |(a) - (b)| over the rows."""
    batches = _slices(args.rows, args.batch_rows)
    config = load_config()
    rule = scoring.SegmentRule(config.segment_status_column, config.churn_threshold,
                               config.conversion_threshold, tuple(config.segment_names)
                               ) if config.segment_status_column else None
    scorer = scoring.LocalScorer(model)
    best, summary, adjacent = float("inf"), None, float("inf")
    for _ in range(args.repeat):  # each pass of (a) next to a pass of (c): the same load
        summary = scoring.score_csv(csv_file, csv_file.with_name("scores.csv"), scorer, rule,
                                    id_column=config.id_column, chunk_rows=args.batch_rows,
                                    progress=False, delimiter=config.csv_delimiter,
                                    decimal=config.csv_decimal)
        best = min(best, summary.seconds)
        started = time.perf_counter()
        for part in batches:
            model.predict_serialized(examples[part])
        adjacent = min(adjacent, time.perf_counter() - started)
    if summary.scored != args.rows:
        raise SystemExit(f"bench: (a) scored {summary.scored:,} of {args.rows:,} rows; "
                         f"see {summary.rejects}")
    by_columns = np.concatenate([model.predict_columns({n: v[part] for n, v in columns.items()})
                                 for part in batches])
    written = pd.read_csv(summary.output)[scoring.PROBABILITY_COLUMN].to_numpy()
    results = {"(a) cartola score: CSV in -> CSV out": args.rows / best,
               "(c) beside each pass of (a)": args.rows / adjacent}
    results.update(_rates({
        "(b) predict_columns, checked columns": [
            lambda part=part: model.predict_columns({n: v[part] for n, v in columns.items()})
            for part in batches],
        "(c) serving_default, serialized examples": [
            lambda part=part: model.predict_serialized(examples[part]) for part in batches],
        "(d) predict_by_name, checked columns": [
            lambda part=part: model.predict_by_name({n: v[part] for n, v in columns.items()})
            for part in batches],
    }, args.rows, args.repeat))
    return results, float(np.max(np.abs(written - by_columns)))


def _measure_encoders(features, args, columns) -> tuple:
    """{encoder: rows/s}, and whether both wire encoders wrote the same bytes."""
    from tfx_bsl.coders.example_coder import (  # pylint: disable=import-outside-toplevel
        RecordBatchToExamplesEncoder)
    batches = _slices(args.rows, args.batch_rows)
    arrays = [{n: v[part] for n, v in columns.items()} for part in batches]
    lists = [{n: _plain(v, features[n]) for n, v in batch.items()} for batch in arrays]
    same = all(row_by_row_examples(plain, features) == build_examples(batch, features)
               for plain, batch in zip(lists, arrays))
    record_batches = [_record_batch(batch, features) for batch in arrays]
    encoder = RecordBatchToExamplesEncoder()
    return _rates({
        "row by row (before)": [lambda c=c: row_by_row_examples(c, features) for c in lists],
        "column-wise, numpy columns (scoring)": [lambda c=c: build_examples(c, features)
                                                 for c in arrays],
        "column-wise, Python lists (server)": [lambda c=c: build_examples(c, features)
                                               for c in lists],
        "tfx_bsl RecordBatchToExamples": [lambda b=b: encoder.encode(b) for b in record_batches],
    }, args.rows, args.repeat), same


def main() -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model-dir", help="folder of versions (default: config serving dir)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows scored by each path")
    parser.add_argument("--batch-rows", type=int, default=scoring.DEFAULT_CHUNK_ROWS,
                        help="rows per batch (and per scoring chunk)")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes; the best counts")
    args = parser.parse_args()
    config = load_config()
    model_dir = Path(args.model_dir) if args.model_dir else config.model_serving_dir
    versions = model_versions(model_dir)
    if not versions:
        raise SystemExit(f"bench: no model version under {model_dir}; run `make run` first or "
                         "pass --model-dir")
    model = ServedModel.load(model_dir / str(versions[-1]), versions[-1])
    span_file = _span_file(config)
    columns = _checked_columns(span_file, model.features, args.rows, config)
    examples = np.empty(args.rows, dtype=object)
    for part in _slices(args.rows, args.batch_rows):
        examples[part] = build_examples({n: v[part] for n, v in columns.items()},
                                        model.features)
    examples = examples.tolist()
    with tempfile.TemporaryDirectory(prefix="bench_score_") as tmp:
        csv_file = Path(tmp) / "rows.csv"
        _write_rows(span_file, csv_file, args.rows, config.csv_delimiter)
        paths, max_diff = _measure_paths(model, args, csv_file, columns, examples)
    encoders, same = _measure_encoders(model.features, args, columns)
    print(f"model {model_dir}/{versions[-1]}; {args.rows:,} rows ({span_file} repeated), "
          f"batches of {args.batch_rows:,} rows; CPUs: {os.cpu_count()}")
    signature = paths["(c) serving_default, serialized examples"]
    by_name = paths["(d) predict_by_name, checked columns"]
    print(f"{'path':<42} {'rows/s':>11} {'vs (c)':>7} {'vs (d)':>7}")
    for name, rate in paths.items():
        print(f"{name:<42} {rate:>11,.0f} {rate / signature:>7.2f} {rate / by_name:>7.2f}")
    print(f"{'tf.Example encoder, alone':<42} {'rows/s':>11} {'vs (c)':>7}")
    for name, rate in encoders.items():
        print(f"{name:<42} {rate:>11,.0f} {rate / signature:>7.2f}")
    print(f"column-wise bytes == row-by-row bytes: {'yes' if same else 'NO'}; "
          f"max |(a) - (b)| probability: {max_diff:.1e} ((a) writes 6 decimals)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
