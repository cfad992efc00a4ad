"""The quiet console: project lines on the terminal, library output (C++ on fd 2, logging,
warnings) in the log file; and ``cartola run`` end to end, cold and again with nothing
changed."""
from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import REPO

from cartola import console

# A console line from a library: TensorFlow's C++ and Python logs, absl, Beam, TFMA, warnings.
NOISE = re.compile(r"cuda_|Unable to register|absl|tensorflow|apache_beam|tfx_bsl|"
                   r"model_analysis|Warning|deprecated|Instructions for updating", re.I)


def _noisy_command(args) -> int:
    os.write(2, b"E external/local_xla/cuda_fft.cc] Unable to register cuFFT factory\n")
    os.write(1, b"raw C++ stdout line\n")
    logging.getLogger("absl").warning("ArtifactQuery.property_predicate is not supported.")
    logging.getLogger("cartola.serving").warning("no loadable version yet")
    warnings.warn("invalid value encountered in divide", RuntimeWarning)
    print("project line on stdout")
    print("cartola: warning: project line on stderr", file=sys.stderr)
    return args.code


def test_library_output_goes_to_the_log_and_project_lines_to_the_console(tmp_path, capfd):
    log = console.log_path_for(tmp_path / "logs", "run")
    code = console.run_quietly(_noisy_command, argparse.Namespace(command="run", code=0),
                               log, verbose=False)
    out, err = capfd.readouterr()
    assert code == 0
    assert out == "project line on stdout\n"
    assert err.endswith(" WARNING no loadable version yet\n"
                        f"cartola: warning: project line on stderr\nfull log: {log}\n")
    assert len(err.splitlines()) == 3
    text = log.read_text(encoding="utf-8")
    for line in ("Unable to register cuFFT factory", "raw C++ stdout line",
                 "WARNING absl: ArtifactQuery.property_predicate",
                 "RuntimeWarning: invalid value encountered in divide"):
        assert line in text
    assert "project line" not in text
    # Everything is back as it was: fd 2 reaches the terminal again, logging has no log handler.
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert all(getattr(getattr(handler, "stream", None), "name", None) != str(log)
               for handler in logging.getLogger().handlers)


def test_a_users_mistake_stays_one_line(tmp_path, capfd):
    log = console.log_path_for(tmp_path / "logs", "run")
    code = console.run_quietly(_noisy_command, argparse.Namespace(command="run", code=2),
                               log, verbose=False)
    assert code == 2
    assert "full log" not in capfd.readouterr().err
    assert "Unable to register cuFFT factory" in log.read_text(encoding="utf-8")


def test_verbose_shows_everything_and_writes_no_log(tmp_path, capfd):
    log = console.log_path_for(tmp_path / "logs", "run")
    code = console.run_quietly(_noisy_command, argparse.Namespace(command="run", code=4),
                               log, verbose=True)
    out, err = capfd.readouterr()
    assert code == 4
    assert "raw C++ stdout line" in out and "project line on stdout" in out
    assert "Unable to register cuFFT factory" in err and "full log" not in err
    assert not log.exists()


def test_a_library_error_is_one_line_naming_the_component(tmp_path, capfd):
    def failing(_args):
        err = ValueError("inputs not connected to outputs\nsecond line of detail")
        setattr(err, console.COMPONENT, "Trainer")
        raise err

    log = console.log_path_for(tmp_path / "logs", "run")
    code = console.run_quietly(failing, argparse.Namespace(command="run"), log, verbose=False)
    _, err = capfd.readouterr()
    assert code == 1
    assert err.splitlines() == [
        "cartola: run failed in Trainer: ValueError: inputs not connected to outputs",
        f"full log: {log}"]
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "second line of detail" in text


def test_old_logs_are_pruned(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    for number in range(console.KEEP_LOGS + 5):
        (folder / f"run-2026010{number:02d}.log").write_text("x", encoding="utf-8")
    with console.quiet_console(folder / "run-20990101.log"):
        pass
    assert len(list(folder.glob("*.log"))) == console.KEEP_LOGS + 1


# A long-lived child (a server's worker): its own quiet console on the parent's log.
_CHILD = """
import logging, os, sys
from pathlib import Path
from cartola import console
logging.basicConfig(level=logging.INFO)
with console.quiet_console(Path(os.environ[console.CONSOLE_LOG_ENV])):
    os.write(2, b"child C++ line\\n")
    logging.getLogger("absl").info("child library record")
    logging.getLogger("cartola.serving").info("serving m version 2")
    print("child ready")
"""


def test_children_started_for_the_terminal_split_their_own_output(tmp_path, capfd):
    log = console.log_path_for(tmp_path / "logs", "serve")
    with console.quiet_console(log):
        with console.terminal_for_children():
            subprocess.run([sys.executable, "-c", _CHILD], check=True, timeout=120,
                           env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
        assert console.CONSOLE_LOG_ENV not in os.environ
        os.write(2, b"parent C++ line after the block\n")
        # Without the block a child writes everything to the log, as Beam's workers do.
        subprocess.run([sys.executable, "-c", "print('unsplit child')"], check=True)
    out, err = capfd.readouterr()
    assert out == "child ready\n"
    assert err.endswith(" INFO serving m version 2\n") and len(err.splitlines()) == 1
    text = log.read_text(encoding="utf-8")
    for line in ("child C++ line", "INFO absl: child library record",
                 "parent C++ line after the block", "unsplit child"):
        assert line in text
    assert "child ready" not in text  # a print reaches the terminal only


def _cartola_run(home):
    env = {name: value for name, value in os.environ.items() if not name.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(home), CARTOLA_DATA_ROOT=str(REPO / "data"),
               CARTOLA_SCHEMA_PATH=str(REPO / "schema" / "schema.pbtxt"),
               CARTOLA_MONITORING_SCHEDULE="none", PYTHONPATH=str(REPO / "src"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cartola.cli", "run"], env=env, check=False,
                          capture_output=True, text=True, timeout=1200)
    return done, time.monotonic() - started


@pytest.mark.e2e
def test_cartola_run_console_is_quiet_and_a_rerun_costs_nothing(tmp_path):
    cold, cold_seconds = _cartola_run(tmp_path)
    assert cold.returncode == 0, cold.stderr
    lines = (cold.stdout + cold.stderr).splitlines()
    assert [line for line in lines if NOISE.search(line)] == []
    assert any(re.match(r"\[\d+:\d\d\] Trainer finished in", line) for line in lines)
    assert any(line.startswith("pushed model: ") for line in lines)
    logs = [line[len("full log: "):] for line in lines if line.startswith("full log: ")]
    assert len(logs) == 1
    text = Path(logs[0]).read_text(encoding="utf-8")
    assert "WARNING absl:" in text and "tensorflow" in text

    again, again_seconds = _cartola_run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["nothing changed; serving version 1"]
    assert again_seconds < cold_seconds / 2, (again_seconds, cold_seconds)
