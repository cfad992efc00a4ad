"""The Airflow 2.11 environment the benchmarks need for the anchor: TFX's AirflowDagRunner.

TFX 1.16's Airflow runner imports Airflow 2 APIs and cannot run on Airflow 3, so the
benchmarks build a second venv from ``bench/airflow2/requirements.txt`` (the project's last
Airflow 2.11 lock) in ``.venv-airflow2``, once, and run it there with the project's
``src`` on PYTHONPATH.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "bench" / "airflow2" / "requirements.txt"
VENV = REPO / ".venv-airflow2"


def _base_python() -> str:
    """This venv's base interpreter (Python 3.10)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(base if base.exists() else sys.executable)


def python() -> Path:
    """The Airflow 2.11 venv's interpreter, built (~2 min, 3 GB) when missing or stale."""
    stamp = VENV / ".lock-sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    exe = VENV / "bin" / "python"
    if exe.exists() and stamp.is_file() and stamp.read_text(encoding="utf-8") == digest:
        return exe
    print(f"building the Airflow 2.11 venv for the anchor in {VENV} ...", file=sys.stderr,
          flush=True)
    subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(exe), "-m", "pip", "install", "--quiet", "uv==0.13.9"], check=True)
    subprocess.run([str(exe), "-m", "uv", "pip", "install", "--python", str(exe), "--quiet",
                    "--no-deps", "-r", str(LOCK)], check=True)
    stamp.write_text(digest, encoding="utf-8")
    return exe


def env(extra: Mapping[str, str] = ()) -> Dict[str, str]:
    """Environment for a process of that venv: its bin first on PATH, the project on
    PYTHONPATH."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result.update(dict(extra))
    result["PATH"] = os.pathsep.join([str(VENV / "bin"), result.get("PATH", "")])
    result["PYTHONPATH"] = str(REPO / "src")
    result["TF_USE_LEGACY_KERAS"] = "1"
    return result
