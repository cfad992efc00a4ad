"""Ingestion speed, side by side in one run: the project's CsvExampleGen and
PostgresExampleGen (Beam-free writer) against TFX's stock CsvExampleGen (its Beam pipeline) on
the same rows (the sample generator's data, 1M rows by default).

Starts a PostgreSQL server on 127.0.0.1 (generated password, in a temporary folder), loads
the CSV into a table with ``cartola.data.postgres.load_csv_spans`` (COPY), then runs each
ExampleGen alone as a one-node TFX pipeline (LocalDagRunner, its own ML Metadata), each with
the Beam options ``cartola run`` would choose for its input size, and prints rows/s, the peak
RSS of the process tree (Beam's workers included) and the ratios. The server is stopped and
everything removed at the end.

    python bench/example_gen.py [--rows 1000000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Tuple

import psutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
from cartola.data import sample_data
from cartola.config import load_config
from cartola.data import postgres
from cartola.data.spans import date_to_span
from cartola.orchestration import beam
from cartola.orchestration.services import LocalServices

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 11, 16)


class PeakRss(threading.Thread):
    """Peak RSS summed over this process and its children (Beam workers), every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = 0, threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.2):
            total = 0
            for member in [me] + me.children(recursive=True):
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        """Stop sampling; the peak in GB."""
        self._done.set()
        self.join()
        return self.peak / 1e9


def run_alone(component, root: Path, beam_args) -> Tuple[float, float]:
    """Seconds and peak RSS (GB) to run ``component`` as a one-node pipeline under
    ``root``."""
    # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=f"bench_{component.id}", pipeline_root=str(root / "pipeline"),
        components=[component], enable_cache=False, beam_pipeline_args=list(beam_args),
        metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(str(root / "metadata.db")))
    watcher = PeakRss()
    watcher.start()
    started = time.monotonic()
    LocalDagRunner().run(pipeline)
    return time.monotonic() - started, watcher.stop()


def _splits(config):
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
    return tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
        tfx.proto.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets)]))


def _compare(config, work: Path, csv_bytes: int, table_bytes: int) -> list:
    """[(ExampleGen, seconds, Beam choice)] of each ExampleGen on the same span."""
    # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx
    from tfx.proto import range_config_pb2
    from cartola.data.csv_example_gen import csv_example_gen
    from cartola.data.postgres_example_gen import postgres_example_gen
    pinned = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
        start_span_number=date_to_span(DAY), end_span_number=date_to_span(DAY)))
    source = postgres.PostgresSource(config)
    runs = []
    for name, component, size in (
            ("TFX CsvExampleGen", tfx.components.CsvExampleGen(
                input_base=str(config.data_dir), input_config=tfx.proto.Input(splits=[
                    tfx.proto.Input.Split(name="single_split", pattern=config.span_pattern)]),
                output_config=_splits(config), range_config=pinned), csv_bytes),
            ("CsvExampleGen", csv_example_gen(
                str(config.data_dir), ",", ".", tfx.proto.Input(splits=[
                    tfx.proto.Input.Split(name="single_split", pattern=config.span_pattern)]),
                _splits(config), pinned), csv_bytes),
            ("PostgresExampleGen", postgres_example_gen(
                source, tfx.proto.Input(splits=[tfx.proto.Input.Split(
                    name="single_split", pattern=source.query)]), _splits(config), pinned),
             table_bytes)):
        choice = beam.choose(config, size)
        runs.append((name, *run_alone(component, work / name, choice.args), choice.reason))
    return runs


def main() -> int:
    """Generate, load, ingest twice, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_example_gen_"))
    services = LocalServices(work / "services")
    try:
        folder = work / "data" / f"snapshot={DAY.isoformat()}"
        sample_data.write_csv(folder / "cartola_sample.csv", n_rows=args.rows)
        uri, secret = services.data_location("bench")
        services.start_postgres()
        services.create_database("bench")
        config = load_config(environ={}, project_home=str(work), data_root=str(work / "data"),
                             schema_path=str(REPO / "schema" / "schema.pbtxt"),
                             source="postgresql", db_uri=uri, db_password_file=str(secret),
                             db_table="bench_users")
        started = time.monotonic()
        postgres.load_spans(config, config.data_dir)
        load_seconds = time.monotonic() - started
        runs = _compare(config, work, (folder / "cartola_sample.csv").stat().st_size,
                        postgres.resolve(config).size)
        print(f"\n{args.rows:,} rows; COPY into PostgreSQL took {load_seconds:.1f} s")
        print(f"{'ExampleGen':20} {'seconds':>8} {'rows/s':>10} {'peak RSS GB':>11}  beam")
        for name, seconds, peak, reason in runs:
            print(f"{name:20} {seconds:8.1f} {args.rows / seconds:10,.0f} {peak:11.2f}  "
                  f"{reason}")
        stock = runs[0][1]
        for name, seconds, _, _ in runs[1:]:
            print(f"{name} rows/s / TFX CsvExampleGen's: {stock / seconds:.2f}x")
    finally:
        services.stop()
        services.remove_data()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
