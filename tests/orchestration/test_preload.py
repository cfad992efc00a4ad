"""Fork safety of the TFX preload (cartola.orchestration.preload), in a fresh interpreter:
the preload leaves no TensorFlow runtime and no Python thread behind, its native threads are
accounted for, a forked child runs TensorFlow, and a preload in a process whose runtime is
already up is refused."""
# pylint: disable=redefined-outer-name
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BODY = Path(__file__).with_name("orchestration_preload_test_body.py")


@pytest.fixture(scope="module")
def outcome():
    """The JSON the body script prints (one interpreter: TFX imports cost ~30 s)."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(BODY)], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_preload_leaves_no_runtime_and_no_python_threads(outcome):
    report = outcome["report"]
    assert report["tensorflow_runtime"] is False
    assert report["new_python_threads"] == []
    assert report["python_threads"] == ["MainThread"]
    assert report["unexplained_threads"] == [], report["native_threads"]
    assert report["safe"] is True


def test_a_forked_child_starts_warm_and_runs_tensorflow(outcome):
    child = outcome["child"]
    assert outcome["child_status"] == 0
    assert child["imported"] is True and child["runtime_before"] is False
    assert child["sum"] == 6.0 and child["runtime_after"] is True
    # The child's runtime is its own: the parent still has none.
    assert outcome["parent_runtime_after_fork"] is False


def test_preload_refuses_a_process_whose_runtime_started(outcome):
    assert outcome["refused"] and "not fork-safe" in outcome["refused"]
