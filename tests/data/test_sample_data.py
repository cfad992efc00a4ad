"""Tests of the synthetic data generator and the shipped sample."""
import csv

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_CSV
from cartola.data import sample_data

MODEL_COLUMNS = ["anos_como_pro", "avg_3", "avg_4", "escalacoes", "norm_escalacao"]


@pytest.fixture(name="sample", scope="module")
def fixture_sample():
    """The default sample, generated once for the module."""
    return sample_data.generate()


def test_same_seed_same_frame_other_seed_other_frame():
    first = sample_data.generate(2000, seed=7)
    pd.testing.assert_frame_equal(first, sample_data.generate(2000, seed=7))
    assert not first.equals(sample_data.generate(2000, seed=8))


def test_chunks_are_bounded_and_a_smaller_sample_is_a_prefix():
    chunks = list(sample_data.iter_chunks(250, seed=3, chunk_rows=100))
    assert [len(chunk) for chunk in chunks] == [100, 100, 50]
    whole = pd.concat(chunks, ignore_index=True)
    assert whole["id"].tolist() == list(range(1, 251))
    smaller = pd.concat(sample_data.iter_chunks(150, seed=3, chunk_rows=100), ignore_index=True)
    pd.testing.assert_frame_equal(smaller, whole.iloc[:150])


def test_columns_label_and_ids(sample):
    assert list(sample.columns) == sample_data.COLUMNS
    assert len(sample) == sample_data.DEFAULT_ROWS
    assert sample["id"].is_unique
    assert sample["pro_target"].notna().all()
    assert set(sample["pro_target"].unique()) == {0, 1}
    assert 0.35 <= sample["pro_target"].mean() <= 0.45


def test_defects_where_planned(sample):
    assert sample[MODEL_COLUMNS].notna().all().all()
    missing = sample.isna().mean()
    assert (missing > 0.01).sum() >= 8
    assert 0 < missing["tempo_desperd"] < 0.05
    assert 0 < (sample["tempo_desperd"] < 0).mean() < 0.05
    assert (sample["avg_3"] > 1).any() and (sample["avg_4"] > 1).any()
    assert sample["pixels"].isna().any()
    assert (~sample["pixels"].dropna().str.fullmatch(r"[1-9]\d*x[1-9]\d*")).any()
    counts = sample["interacoes"].dropna()
    assert counts.max() > 10 * counts.median()  # long right tail


def test_write_csv_plain_format_and_no_leftovers(tmp_path):
    path = sample_data.write_csv(tmp_path / "out.csv", n_rows=300, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    text = path.read_text(encoding="utf-8")
    assert '"' not in text
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == sample_data.COLUMNS and len(rows) == 301
    integer_cells = [row[rows[0].index("anos_desde_criacao")] for row in rows[1:]]
    assert all(cell == "" or cell.isdigit() for cell in integer_cells)
    assert "" in integer_cells  # missing is an empty cell, not NaN or 0
    pd.testing.assert_frame_equal(pd.read_csv(path),
                                  pd.read_csv(sample_data.write_csv(tmp_path / "b.csv", 300, 1)))


def test_write_csv_failure_keeps_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    original = sample_data.iter_chunks

    def broken(*_args, **_kwargs):
        yield from original(10, 1)
        raise OSError("disk full")

    target = tmp_path / "out.csv"
    target.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(sample_data, "iter_chunks", broken)
    with pytest.raises(OSError):
        sample_data.write_csv(target, n_rows=20, seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert target.read_text(encoding="utf-8") == "old\n"


def test_cli_writes_requested_rows(tmp_path, capsys):
    out = tmp_path / "cli.csv"
    assert sample_data.main(["--rows", "120", "--seed", "5", "--out", str(out), "--single"]) == 0
    assert len(pd.read_csv(out)) == 120
    assert str(out) in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        sample_data.main(["--rows", "0", "--out", str(out)])
    assert err.value.code == 2


def test_rejects_non_positive_sizes():
    with pytest.raises(ValueError):
        sample_data.generate(0)
    with pytest.raises(ValueError):
        next(sample_data.iter_chunks(10, chunk_rows=0))


def test_shipped_sample_is_the_generator_output(sample):
    shipped = pd.read_csv(SAMPLE_CSV)
    expected = sample.astype({name: "float64" for name in sample_data.INTEGER_COLUMNS
                              if sample[name].isna().any()})
    expected = expected.astype({name: "int64" for name in sample_data.INTEGER_COLUMNS
                                if not sample[name].isna().any()})
    pd.testing.assert_frame_equal(shipped, expected)
    assert np.isclose(shipped["pro_target"].mean(), sample["pro_target"].mean())


def test_weekly_spans_change_like_a_user_base(tmp_path):
    written = sample_data.write_spans(tmp_path, weeks=3, n_rows=2000, seed=3, drift=True)
    assert [p.parent.name for p in written] == [
        "snapshot=2026-11-02", "snapshot=2026-11-09", "snapshot=2026-11-16",
        "snapshot=2026-11-23"]
    first, second, latest, drifted = (pd.read_csv(p) for p in written)
    pd.testing.assert_frame_equal(latest, pd.read_csv(sample_data.write_csv(
        tmp_path / "flat.csv", 2000, 3)))  # the latest span is the plain sample
    # 3% joined and 2% left each week.
    assert (len(first), len(second), len(latest)) == (1960, 1980, 2000)
    assert set(latest["id"]) - set(second["id"]) == set(range(1941, 2001))
    assert set(second["id"]) - set(latest["id"]) == set(range(2001, 2041))
    # Lineups accumulate over the season: the same users had fewer a week before.
    both = second.merge(latest, on="id", suffixes=("_before", "_after"))
    assert (both["escalacoes_before"] <= both["escalacoes_after"]).all()
    assert both["escalacoes_before"].mean() < both["escalacoes_after"].mean()
    # The planted drift moves one model feature only.
    assert np.allclose(drifted["avg_3"] - latest["avg_3"], sample_data.DRIFT_SHIFT)
    pd.testing.assert_frame_equal(drifted.drop(columns="avg_3"), latest.drop(columns="avg_3"))


def test_shipped_spans_are_the_generator_output():
    for path, (_, frame) in zip(sorted(SAMPLE_CSV.parents[1].glob("snapshot=*/*.csv")),
                                sample_data.weekly_spans()):
        shipped = pd.read_csv(path)
        assert len(shipped) == len(frame) and shipped["id"].tolist() == frame["id"].tolist()
        assert shipped["escalacoes"].tolist() == frame["escalacoes"].astype(int).tolist()
