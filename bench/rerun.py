"""Cold run against a re-run with nothing changed, side by side in one run: `cartola run`
twice in a fresh project home on the shipped sample data, each a new process, wall time from
process start to exit (TFX import included). Also counts the console lines of each run and
the lines of the library log the cold run wrote.

    python bench/rerun.py            # goal: re-run <= 0.2x the cold run
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(home: Path) -> tuple:
    """(wall seconds, exit code, console text) of one `cartola run` in ``home``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(home), CARTOLA_DATA_ROOT=str(REPO / "data"),
               CARTOLA_SCHEMA_PATH=str(REPO / "schema" / "schema.pbtxt"),
               TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cartola.cli", "run"], env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return time.monotonic() - started, done.returncode, done.stdout


def main() -> int:
    """Print both wall times, the ratio and the line counts."""
    with tempfile.TemporaryDirectory(prefix="cartola-rerun-") as tmp:
        cold, cold_rc, cold_out = run(Path(tmp))
        again, again_rc, again_out = run(Path(tmp))
        logs = re.findall(r"^full log: (.*)$", cold_out, re.M)
        log_lines = (len(Path(logs[-1]).read_text(encoding="utf-8").splitlines())
                     if logs else 0)
    print(f"cold run:  {cold:6.1f} s wall, exit {cold_rc}, {len(cold_out.splitlines())} console "
          f"lines, {log_lines} lines in its library log")
    print(f"re-run:    {again:6.1f} s wall, exit {again_rc}, "
          f"{len(again_out.splitlines())} console lines")
    print(f"re-run / cold: {again / cold:.3f}x (goal <= 0.2x)")
    print("re-run said: " + " | ".join(again_out.strip().splitlines()))
    return 0 if cold_rc == 0 and again_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
