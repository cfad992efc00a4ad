"""A data set unlike Cartola's, by config alone (``cartola init``, ``run``, ``score``), and
malformed files, each stopped with one ``file:line: problem`` line before any TFX work."""
from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_CSV, SCHEMA
from pipeline_helpers import tree_digest

ROWS = 3000


def spreadsheet_export(folder: Path, rows: int = ROWS, seed: int = 7) -> Path:
    """A purchase-propensity CSV as a Brazilian spreadsheet exports it: UTF-8 with a BOM,
    ';' between fields, decimal commas. Numeric and string features, a column empty in every
    row, free text unique per row, no id column; the label depends on age, income and city."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 75, rows)
    income = np.round(rng.lognormal(8, 0.6, rows), 2)
    city = rng.choice(["Recife", "Natal", "Belém", "Porto Alegre", "Goiânia"], rows)
    channel = rng.choice(["app", "web", "loja"], rows)
    logit = 0.09 * (age - 45) + 0.9 * (np.log(income) - 8) / 0.6 + np.where(
        np.isin(city, ["Recife", "Natal"]), 1.2, -0.6)
    bought = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({
        "age": age, "income": [f"{v:.2f}".replace(".", ",") for v in income],
        "city": city, "channel": channel, "notes": "",
        "comment": [f"cliente {i} disse algo" for i in range(rows)], "bought": bought})
    frame.loc[rng.random(rows) < 0.1, "income"] = ""  # missing incomes
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "export.csv"
    with open(path, "wb") as handle:
        handle.write(codecs.BOM_UTF8)
        handle.write(frame.to_csv(sep=";", index=False).encode("utf-8"))
    return path


@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_new_data_set_through_init_run_and_score(tmp_path, capsys):
    from cartola.cli import main  # pylint: disable=import-outside-toplevel
    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    from cartola.published.versions import model_versions  # pylint: disable=import-outside-toplevel
    data = spreadsheet_export(tmp_path / "data")
    target = tmp_path / "purchases"
    assert main(["init", str(target), "--data", str(data.parent), "--label", "bought",
                 "--name", "purchases"]) == 0
    printed = capsys.readouterr().out
    assert "left out: notes: empty in every row" in printed
    assert "left out: comment: 3,000 distinct strings" in printed
    config = load_config(target / "config.toml", environ={})
    assert (config.csv_delimiter, config.csv_decimal, config.id_column) == (";", ",", "")
    assert config.numeric_features == ("age", "income")
    assert set(config.categorical_features) == {"city", "channel"}
    assert (config.slice_feature, config.clip_features, config.segment_status_column) == (
        "", (), "")
    assert "lifecycle_stage: DEPRECATED" in (target / "schema.pbtxt").read_text()

    assert main(["--config", str(target / "config.toml"), "run"]) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    assert model_versions(config.model_serving_dir) == [1], printed
    assert config.model_serving_dir == target / "serving_model" / "purchases"
    report = Path(printed.split("run report: ", 1)[1].split()[0])
    assert "purchases run report" in report.read_text(encoding="utf-8")
    assert "Cartola" not in report.read_text(encoding="utf-8")

    scores = tmp_path / "scores.csv"
    assert main(["--config", str(target / "config.toml"), "score", str(data), str(scores),
                 "--no-progress"]) == 0, capsys.readouterr()
    out = pd.read_csv(scores)
    assert out.columns.tolist() == ["line", "probability"]
    assert out["line"].tolist() == list(range(2, ROWS + 2))  # every row, by its line
    assert out["probability"].between(0, 1).all() and out["probability"].std() > 0.1
    truth = pd.read_csv(data, sep=";", encoding="utf-8-sig")["bought"].to_numpy()
    assert out["probability"][truth == 1].mean() > out["probability"][truth == 0].mean() + 0.2


def _sample_lines(count: int = 200) -> list:
    with open(SAMPLE_CSV, encoding="utf-8") as handle:
        return [next(handle) for _ in range(count)]


def _not_utf8(folder: Path) -> str:
    lines = _sample_lines()
    lines[41] = "ã" + lines[41][1:]  # line 42, saved as Windows-1252 would save it
    (folder / "part1.csv").write_bytes("".join(lines[:41]).encode("utf-8")
                                       + "".join(lines[41:]).encode("cp1252"))
    return r"part1.csv:42: not UTF-8: byte 0xe3 at column 1 \(it reads as Latin-1"


def _short_rows(folder: Path) -> str:
    lines = _sample_lines()
    for index in (7, 9):  # lines 8 and 10 lose their last field
        lines[index] = lines[index].rstrip("\n").rsplit(",", 1)[0] + "\n"
    (folder / "part1.csv").write_text("".join(lines), encoding="utf-8")
    return r"part1.csv:8: \d+ fields where the header has \d+ .*: 8 \(\d+\), 10 \(\d+\)"


def _spreadsheet(folder: Path) -> str:
    frame = pd.read_csv(SAMPLE_CSV, nrows=100)
    frame.to_csv(folder / "part1.csv", sep=";", decimal=",", index=False)
    return r"part1.csv:1: the header is one column .* set csv_delimiter = ';'"


def _reordered(folder: Path) -> str:
    frame = pd.read_csv(SAMPLE_CSV, nrows=100, dtype=str, keep_default_na=False)
    frame.to_csv(folder / "part1.csv", index=False)
    frame[list(reversed(frame.columns))].to_csv(folder / "part2.csv", index=False)
    return r"part2.csv:1: same columns as part1.csv in another order"


def _duplicated(folder: Path) -> str:
    lines = _sample_lines()
    lines[0] = lines[0].replace("avg_4", "avg_3")
    (folder / "part1.csv").write_text("".join(lines), encoding="utf-8")
    return r"part1.csv:1: duplicated column name 'avg_3'"


def _binary(folder: Path) -> str:
    (folder / "part1.csv").write_bytes(np.random.default_rng(1).bytes(200_000))
    return r"part1.csv: not a CSV text file"


def _too_few_rows(folder: Path) -> str:
    (folder / "part1.csv").write_text("".join(_sample_lines(21)), encoding="utf-8")
    return r"part1.csv: 20 data rows; the pipeline needs at least 440 "


@pytest.mark.e2e
@pytest.mark.parametrize("make", [_not_utf8, _short_rows, _spreadsheet, _reordered, _duplicated,
                                  _binary, _too_few_rows])
def test_malformed_file_exits_2_with_file_line_and_problem(pushed_project, tmp_path, make):
    """``cartola run`` as a user runs it, in its own process: exit 2, one line, no
    traceback, in seconds, and the served model untouched."""
    config, _ = pushed_project
    folder = tmp_path / "in"
    folder.mkdir()
    expected = make(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(config.project_home), CARTOLA_SCHEMA_PATH=str(SCHEMA))
    before = tree_digest(config.path(config.serving_dir))
    done = subprocess.run([sys.executable, "-m", "cartola.cli", "run", "--data-root",
                           str(folder)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert re.search(expected, done.stderr), done.stderr
    assert tree_digest(config.path(config.serving_dir)) == before


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_single_class_label_stops_at_validation(pushed_project, tmp_path):
    from cartola.errors import DataValidationError  # pylint: disable=import-outside-toplevel
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    frame = pd.read_csv(SAMPLE_CSV, nrows=3000, dtype=str, keep_default_na=False)
    frame[config.label] = "1"
    (tmp_path / "ones").mkdir()
    frame.to_csv(tmp_path / "ones" / "data.csv", index=False)
    before = tree_digest(config.path(config.serving_dir))
    with pytest.raises(DataValidationError,
                       match=r"label 'pro_target': a single class \(every example is 1\)"):
        run_local(config, str(tmp_path / "ones"))
    assert tree_digest(config.path(config.serving_dir)) == before


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_negative_count_is_a_schema_anomaly(pushed_project, tmp_path):
    from cartola.errors import DataValidationError  # pylint: disable=import-outside-toplevel
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    frame = pd.read_csv(SAMPLE_CSV, nrows=3000, dtype=str, keep_default_na=False)
    frame.loc[frame.index[:40], "anos_como_pro"] = "-3"  # years as a PRO cannot be negative
    (tmp_path / "negative").mkdir()
    frame.to_csv(tmp_path / "negative" / "data.csv", index=False)
    with pytest.raises(DataValidationError) as stopped:
        run_local(config, str(tmp_path / "negative"))
    problems = [line.strip() for line in str(stopped.value).splitlines()[1:]]
    assert problems == [f"[{split}] feature 'anos_como_pro': INT_TYPE_SMALL_INT: Unexpectedly "
                        "small value: -3." for split in ("eval", "train")], problems
