"""Pipeline cost against data size, side by side in one run: `cartola run` on sample-generator
data of each size, each in a fresh project home, for each Beam mode asked for.

Prints per run the wall time (process start to exit, TFX import included), the pipeline time
and each heavy component's time (from ML Metadata), the Beam choice, and the peak RSS of the
whole process tree (Beam's worker processes included, sampled every 0.2 s) as summed RSS and
summed PSS, overall and per component; then, per mode,
time(larger)/time(smaller) for each pair of sizes next to each other.

    python bench/scale.py                                   # 100k and 1M rows, auto mode
    python bench/scale.py --rows 20000,100000 --beam in_memory,multi_processing
    python bench/scale.py --rows 10000000                   # for those who have the time
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

from cartola.data import sample_data

REPO = Path(__file__).resolve().parents[1]
PSS_EVERY = 10  # samples (of 0.2 s) between two PSS readings
HEAVY = ("CsvExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator")


def tree_memory(process: psutil.Process, pss: bool,
                members: Optional[List[psutil.Process]] = None) -> Tuple[int, int, int]:
    """(RSS, PSS) bytes summed over ``process`` and all its descendants (``members``, when
    the caller listed them already), and the RSS of ``process`` alone (PSS 0 unless ``pss``:
    reading it walks every mapping, too slow for each sample). Summed RSS counts the
    pages processes share (TensorFlow's libraries, mapped by every Beam worker) once per
    process; PSS splits each shared page between its sharers, so its sum is what the tree
    takes from the machine."""
    totals = [0, 0, 0]
    for member in members or [process] + process.children(recursive=True):
        try:
            info = member.memory_full_info() if pss else member.memory_info()
        except psutil.Error:  # a worker that just exited
            continue
        totals[0] += info.rss
        totals[1] += getattr(info, "pss", 0)
        if member.pid == process.pid:
            totals[2] = info.rss
    return totals[0], totals[1], totals[2]


class _Watcher:
    """Peak memory of the tree per running component, from the run's progress lines."""

    STARTED = re.compile(rb"\] (\w+) started")

    def __init__(self, log: Path, trace: Optional[Path] = None):
        self._log, self._offset, self.current, self._count = log, 0, "startup", 0
        self.peaks: Dict[str, List[int]] = {}  # component -> [RSS, PSS, main process RSS]
        self._trace, self._started = trace, time.monotonic()
        if trace is not None:
            trace.write_text("seconds,component,tree_rss_mb,main_rss_mb,processes,"
                             "main_cpu_s,workers_cpu_s\n", encoding="utf-8")

    def sample(self, process: psutil.Process) -> None:
        """Attribute the tree's memory now to the component that started last."""
        with open(self._log, "rb") as handle:
            handle.seek(self._offset)
            new = handle.read()
        new = new[:new.rfind(b"\n") + 1]  # whole lines only; the rest is read next time
        self._offset += len(new)
        for match in self.STARTED.finditer(new):
            self.current = match.group(1).decode()
        self._count += 1
        members = [process] + process.children(recursive=True)
        memory = tree_memory(process, self._count % PSS_EVERY == 0, members)
        peaks = self.peaks.setdefault(self.current, [0, 0, 0])
        peaks[:] = [max(old, now) for old, now in zip(peaks, memory)]
        if self._trace is not None:
            self._write_trace(members, memory)

    def _write_trace(self, members: List[psutil.Process],
                     memory: Tuple[int, int, int]) -> None:
        """One CSV line: time, component, memory, and the CPU seconds the main process
        (``members[0]``) and the live workers have used so far (user + system), to tell who
        is busy."""
        process, children = members[0], members[1:]
        workers = 0.0
        for child in children:
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            workers += times.user + times.system
        own = process.cpu_times()
        with open(self._trace, "a", encoding="utf-8") as out:
            out.write(f"{time.monotonic() - self._started:.1f},{self.current},"
                      f"{memory[0] / 1e6:.0f},{memory[2] / 1e6:.0f},{len(children) + 1},"
                      f"{own.user + own.system:.1f},{workers:.1f}\n")


def run_once(data: Path, home: Path, mode: str, log: Path,
             trace: Optional[Path] = None) -> Dict[str, object]:
    """`cartola run` on ``data`` in ``home`` with ``beam_mode = mode``: its figures."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(home), CARTOLA_DATA_ROOT=str(data), CARTOLA_BEAM_MODE=mode,
               CARTOLA_SCHEMA_PATH=str(REPO / "schema" / "schema.pbtxt"))
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "cartola.cli", "run"], stdout=out, stderr=subprocess.STDOUT,
            env=env)
        watched, watcher = psutil.Process(child.pid), _Watcher(log, trace)
        while child.poll() is None:
            try:
                watcher.sample(watched)
            except psutil.Error:  # the run just ended
                break
            time.sleep(0.2)
    text = log.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^components: (.*)$", text, re.M)
    components = {name: float(seconds) for name, seconds in
                  re.findall(r"(\w+) ([\d.]+) s", found.group(1))} if found else {}
    pipeline = re.search(r"^pipeline finished in ([\d.]+) s", text, re.M)
    choice = re.search(r"^beam: (.*)$", text, re.M)
    return {"rc": child.returncode, "wall": time.monotonic() - started,
            "pipeline": float(pipeline.group(1)) if pipeline else None,
            "components": components,
            "peak_gb": max((p[0] for p in watcher.peaks.values()), default=0) / 1e9,
            "peak_pss_gb": max((p[1] for p in watcher.peaks.values()), default=0) / 1e9,
            "peaks": {name: tuple(value / 1e9 for value in values)
                      for name, values in watcher.peaks.items()},
            "beam": choice.group(1) if choice else "?", "log": log}


def _size(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def report(results: List[tuple]) -> None:
    """The side-by-side table and the ratios."""
    names = "  ".join(f"{name[:10]:>10}" for name in HEAVY)
    print(f"\nrows  mode              wall s  pipeline s  {names}  peak RSS GB  peak PSS GB  "
          f"beam")
    for rows, mode, got in results:
        cells = "  ".join(f"{got['components'].get(name, float('nan')):10.1f}" for name in HEAVY)
        pipeline = got["pipeline"] if got["pipeline"] is not None else float("nan")
        print(f"{_size(rows):5} {mode:16} {got['wall']:7.1f}  {pipeline:10.1f}  {cells}  "
              f"{got['peak_gb']:11.2f}  {got['peak_pss_gb']:11.2f}  {got['beam']}")
        print("      peak by component, RSS/PSS GB (main process RSS): " + ", ".join(
            f"{name} {rss:.2f}/{pss:.2f} ({main:.2f})"
            for name, (rss, pss, main) in got["peaks"].items()))
        if got["rc"] != 0:
            tail = got["log"].read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
            print(f"      exit {got['rc']}:\n        " + "\n        ".join(tail))
    for mode in dict.fromkeys(mode for _, mode, _ in results):
        runs = sorted((rows, got) for rows, m, got in results if m == mode and got["rc"] == 0)
        for (small, a), (large, b) in zip(runs, runs[1:]):
            print(f"{mode}: time({_size(large)})/time({_size(small)}) = "
                  f"{b['pipeline'] / a['pipeline']:.2f} pipeline, {b['wall'] / a['wall']:.2f} "
                  f"wall (rows x{large / small:g})")
    modes = list(dict.fromkeys(mode for _, mode, _ in results))
    for rows in dict.fromkeys(rows for rows, _, _ in results):
        times = {m: got["pipeline"] for r, m, got in results if r == rows and got["rc"] == 0}
        if len(modes) == 2 and len(times) == 2:
            print(f"{_size(rows)}: pipeline {modes[1]} / {modes[0]} = "
                  f"{times[modes[1]] / times[modes[0]]:.2f}")


def main() -> int:
    """Generate the data, run each size and mode, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rows", default="100000,1000000",
                        help="comma-separated row counts (default: %(default)s)")
    parser.add_argument("--beam", default="auto",
                        help="comma-separated beam_mode values to compare (auto, in_memory, "
                             "multi_processing; default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the data and project homes")
    parser.add_argument("--trace", action="store_true",
                        help="write each run's memory samples (tree and main process RSS, "
                             "every 0.2 s) to a CSV beside its log; implies --keep")
    args = parser.parse_args()
    sizes = [int(value) for value in args.rows.split(",")]
    modes = args.beam.split(",")
    work = Path(tempfile.mkdtemp(prefix="cartola-scale-"))
    results = []
    try:
        for rows in sizes:
            data = work / f"data-{rows}"
            started = time.monotonic()
            sample_data.write_csv(data / "snapshot=2026-11-16" / sample_data.FILE_NAME, rows)
            print(f"{_size(rows)} rows: generated in {time.monotonic() - started:.1f} s",
                  flush=True)
            for mode in modes:
                got = run_once(data, work / f"home-{rows}-{mode}", mode,
                               work / f"run-{rows}-{mode}.log",
                               work / f"memory-{rows}-{mode}.csv" if args.trace else None)
                results.append((rows, mode, got))
                print(f"{_size(rows)} {mode}: exit {got['rc']}, wall {got['wall']:.1f} s, "
                      f"peak {got['peak_gb']:.2f} GB", flush=True)
        report(results)
    finally:
        if args.keep or args.trace:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(got["rc"] == 0 for _, _, got in results) else 1


if __name__ == "__main__":
    sys.exit(main())
