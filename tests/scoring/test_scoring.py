"""Batch scoring: line numbers and reasons of rejected rows, segments, chunking, atomic
output (fake scorers), then the sample data with the pushed model (e2e)."""
from __future__ import annotations

import csv
import itertools
import json
import random
import re
import zlib

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_CSV
from cartola.cli import tools as tools_cli
from cartola.scoring import batch as scoring, csv_input as scoring_csv
from cartola.serving.client import ServingError
from cartola.serving.model import RawFeature

CARTOLA_SEGMENTS = ("churn_risk", "conversion_target", "neither")
FEATURES = {"x": RawFeature("x", "float", True), "k": RawFeature("k", "int", False),
            "c": RawFeature("c", "string", False)}

CSV_TEXT = """id,pro_target,x,k,c,other
1,1,2,3,a,z
2,0,8,,b,z
3,1,9,1,,z
4,0,1,0,a,z
5,2,1,0,a,z
6,1,abc,0,a,z
7,1,1,1.5,a,z

8,1,1,1,a
9,1,5,1,"multi
line",z
,1,1,1,a,z
10,0,,1,a,z
11,0,inf,1,a,z
12,0,6,NaN,a,z
"""
EXPECTED_REJECTS = [
    (6, "5", "pro_target must be 0 or 1, got '2'"),
    (7, "6", "x is not a number: 'abc'"),
    (8, "7", "k must be an integer, got '1.5'"),
    (9, "", "blank line"),
    (10, "8", "expected 6 fields, found 5"),
    (13, "", "missing id"),
    (14, "10", "x is required but missing"),
    (15, "11", "x is not finite"),
]


class FakeScorer:
    """p = x / 10; remembers the columns it was given."""

    features = FEATURES
    description = "fake"

    def __init__(self):
        self.calls = []

    def predict(self, columns):
        """x / 10 per row, no per-row failures."""
        self.calls.append(columns)
        return np.asarray(columns["x"], dtype=float) / 10, {}


def _score(tmp_path, text=CSV_TEXT, scorer=None, **kwargs):
    source = tmp_path / "in.csv"
    source.write_text(text, encoding="utf-8")
    rule = {"status_column": "pro_target", "churn_threshold": 0.5, "conversion_threshold": 0.5}
    rule.update({k: kwargs.pop(k) for k in list(kwargs) if k in rule})
    summary = scoring.score_csv(source, tmp_path / "out.csv", scorer or FakeScorer(),
                                scoring.SegmentRule(**rule), id_column="id", progress=False,
                                **kwargs)
    return summary, pd.read_csv(summary.output, dtype={"id": str}), list(
        csv.reader(summary.rejects.open(encoding="utf-8")))


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_rows_segments_and_rejects_with_line_numbers(tmp_path, chunk_rows):
    summary, out, rejects = _score(tmp_path, chunk_rows=chunk_rows)
    assert out.columns.tolist() == ["id", "probability", "segment"]
    assert out["id"].tolist() == ["1", "2", "3", "4", "9", "12"]
    assert out["segment"].tolist() == ["churn_risk", "conversion_target", "neither", "neither",
                                       "neither", "conversion_target"]
    assert out["probability"].tolist() == pytest.approx([0.2, 0.8, 0.9, 0.1, 0.5, 0.6])
    assert rejects[0] == ["line", "id", "reason"]
    assert [(int(r[0]), r[1], r[2]) for r in rejects[1:]] == EXPECTED_REJECTS
    assert (summary.rows, summary.scored, summary.rejected) == (14, 6, 8)
    assert summary.by_segment == out["segment"].value_counts().to_dict()
    assert summary.mean_probability("neither") == pytest.approx(0.5)
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_values_reach_the_model_as_nan_or_none(tmp_path):
    scorer = FakeScorer()
    _score(tmp_path, scorer=scorer)
    columns = scorer.calls[0]  # numpy columns, as the model's encoder takes them
    assert columns["k"].dtype == np.float64
    np.testing.assert_array_equal(columns["k"], [3, np.nan, 1, 0, 1, np.nan])
    assert columns["c"].tolist() == ["a", "b", None, "a", "multi\nline", "a"]


def test_whitespace_case_missing_tokens_bom_crlf_and_bad_bytes(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("\ufeffid;pro_target;x;k;c;other\r\n"
                       " 1 ; TRUE ;\t2,5 ; 3 ; a ;z\r\n"
                       "2;False;8;NULL;\xa0b\xa0;z\r\n"
                       "3;1;n/a;1;c;z\r\n"
                       "4;0;1,5e1;N/A;;z\r\n".encode() + b"5;1;1;1;\xff;z\r\n")
    scorer = FakeScorer()
    summary = scoring.score_csv(source, tmp_path / "out.csv", scorer,
                                scoring.SegmentRule("pro_target", 0.5, 0.5), id_column="id",
                                progress=False, delimiter=";", decimal=",")
    out = pd.read_csv(summary.output, dtype={"id": str})
    assert out["id"].tolist() == ["1", "2", "4", "5"]
    assert out["probability"].tolist() == pytest.approx([0.25, 0.8, 1.5, 0.1])
    assert out["segment"].tolist() == ["churn_risk", "conversion_target", "conversion_target",
                                       "churn_risk"]
    with summary.rejects.open(encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1:] == [["4", "3", "x is required but missing"]]
    columns = scorer.calls[0]
    np.testing.assert_array_equal(columns["k"], [3, np.nan, np.nan, 1])
    assert columns["c"].tolist() == ["a", "b", None, "\ufffd"]


def test_thresholds_change_the_segments(tmp_path):
    summary, out, _ = _score(tmp_path, churn_threshold=0.95, conversion_threshold=0.05)
    assert out["segment"].tolist() == ["churn_risk", "conversion_target", "churn_risk",
                                       "conversion_target", "churn_risk", "conversion_target"]
    assert summary.by_segment == {"churn_risk": 3, "conversion_target": 3, "neither": 0}


def test_without_id_and_segments_rows_are_named_by_line(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("x,k,c\n2,3,a\nabc,1,b\n\n8,,b\n", encoding="utf-8")
    summary = scoring.score_csv(source, tmp_path / "out.csv", FakeScorer(), None, id_column="",
                                progress=False)
    out = pd.read_csv(summary.output)
    assert out.columns.tolist() == ["line", "probability"]
    assert out["line"].tolist() == [2, 5] and out["probability"].tolist() == pytest.approx(
        [0.2, 0.8])
    with summary.rejects.open(encoding="utf-8") as handle:
        rejects = list(csv.reader(handle))
    assert rejects == [["line", "reason"], ["3", "x is not a number: 'abc'"],
                       ["4", "blank line"]]
    assert summary.by_segment == {"all": 2} and "all" in summary.table()


def test_named_segments(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,y,x,k,c\n1,1,2,3,a\n2,0,8,1,b\n", encoding="utf-8")
    rule = scoring.SegmentRule("y", 0.5, 0.5, names=("at_risk", "lookalike", "rest"))
    summary = scoring.score_csv(source, tmp_path / "out.csv", FakeScorer(), rule,
                                id_column="id", progress=False)
    assert pd.read_csv(summary.output)["segment"].tolist() == ["at_risk", "lookalike"]


def test_missing_status_column_is_refused(tmp_path):
    with pytest.raises(scoring.ScoringError, match="missing column.*'ativo'.*--status-column"):
        _score(tmp_path, status_column="ativo")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"churn_threshold": 1.5}, "churn_threshold"), ({"chunk_rows": 0}, "chunk_rows")])
def test_bad_settings_are_refused(tmp_path, kwargs, message):
    with pytest.raises(scoring.ScoringError, match=message):
        _score(tmp_path, **kwargs)


def test_failure_leaves_previous_output_untouched(tmp_path):
    class Broken(FakeScorer):
        """Fails on the first chunk."""

        def predict(self, columns):
            raise RuntimeError("model exploded")

    (tmp_path / "out.csv").write_text("previous\n")
    with pytest.raises(RuntimeError, match="exploded"):
        _score(tmp_path, scorer=Broken())
    assert (tmp_path / "out.csv").read_text() == "previous\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_http_scorer_retries_a_refused_batch_row_by_row():
    class Client:
        """Refuses any batch holding x == 13, as a server's 400 would."""

        model_path = "/v1/models/m"

        def raw_inputs(self):
            """The model's predict_raw inputs."""
            return {"x": "DT_FLOAT", "c": "DT_STRING"}

        def predict_columns(self, columns):
            """x / 100 per row."""
            if any(x == 13 for x in columns["x"]):
                raise ServingError(400, "x must not be 13")
            return [x / 100 for x in columns["x"]]

    scorer = scoring.HttpScorer(Client(), batch_size=4)
    assert scorer.features["x"].kind == "float" and scorer.features["c"].kind == "string"
    probabilities, errors = scorer.predict({"x": [1, 2, 13, 4, 5], "c": ["a"] * 5})
    assert probabilities[[0, 1, 3, 4]] == pytest.approx([0.01, 0.02, 0.04, 0.05])
    assert errors == {2: "refused by the server: x must not be 13"}


def test_http_scorer_sends_checked_columns_as_json_values():
    sent = []

    class Client:
        """Records what it is sent; p = 0.5."""

        model_path = "/v1/models/m"

        def raw_inputs(self):
            """The model's predict_raw inputs."""
            return {"x": "DT_FLOAT", "c": "DT_STRING"}

        def predict_columns(self, columns):
            """0.5 per row, once the columns survive JSON."""
            sent.append(json.loads(json.dumps(columns, allow_nan=False)))
            return [0.5] * len(columns["x"])

    probabilities, _ = scoring.HttpScorer(Client()).predict(
        {"x": np.array([1.5, np.nan, 3.0]), "c": np.array(["ç", None, "b"], dtype=object)})
    assert probabilities.tolist() == [0.5] * 3
    assert sent == [{"x": [1.5, None, 3.0], "c": ["ç", None, "b"]}]


class HashScorer:
    """p from a hash of each row's values (a few rounding ties, some refusals); remembers the
    columns it was given, as text."""

    features = {**FEATURES, "y": RawFeature("y", "float", False),
                "n": RawFeature("n", "int", True)}
    description = "hash"

    def __init__(self, refuse: bool):
        self.refuse = refuse
        self.calls = []

    def predict(self, columns):
        """A probability per row; every 11th hash refused when ``refuse``."""
        self.calls.append({name: (values.dtype.str, repr(values.tolist()))
                           for name, values in columns.items()})
        rows = zip(*(values.tolist() for values in columns.values()))
        hashes = [zlib.crc32(repr(row).encode()) for row in rows]
        ties = (0.0078125, 0.0234375, 2.5e-6, 0.5, 1.0, 0.0, -0.0, 12.5)
        probabilities = np.array([ties[h % 8] if h % 7 == 0 else h % 1_000_001 / 1e6
                                  for h in hashes])
        return probabilities, {i: f"refused {h % 3}" for i, h in enumerate(hashes)
                               if self.refuse and h % 11 == 0}


ODD_VALUES = ["", " 1", "NA", "null", "nan", "-0", "1e5", ".5", "+3", "1,5", "inf", "abc",
              "12345678901234567", "0.30000000000000004", "2.5", "\xa01", "São", "a,b", " a"]
ODD_LINES = ["", "\r", "   ", '"1",1,1,1,a,1,1,z', '7,1,"multi\nline",1,a,1,1,z', "8,1,1",
             "9,1,1,1,a,1,1,z,extra", "10,1,1,1,\x00,1,1,z", "11,1,1,1,a,1,1,z\r",
             "\ufeff12,1,1,1,a,1,1,z", "13|0,1,1,1,a,1,1,z",  # | becomes a comma
             "14,1,0.30000000000000004,1,a,1,1,z"]


def _messy_csv(rng: random.Random, rows: int, chaos: float, delimiter: str, odd) -> bytes:
    """Mostly plain rows (id,pro_target,x,k,c,y,n,other) with numbers in the delimiter's
    decimal style; at rate ``chaos``, a row with the next of ``odd`` (an odd value in the next
    column, then an odd line, cycling through them)."""
    lines = []
    for i in range(rows):
        values = [str(i), rng.choice("01"), f"{rng.uniform(-9, 9):.{rng.randint(0, 5)}f}",
                  rng.choice(["", str(rng.randint(-50, 500))]), rng.choice(["a", "b", ""]),
                  rng.choice(["", f"{rng.uniform(0, 99):.2f}"]), str(rng.randint(0, 9)), "z"]
        if delimiter == ";":
            values = [value.replace(".", ",") for value in values]
        column, oddity = next(odd) if rng.random() < chaos else (None, "")
        if column is not None:
            values[column] = oddity
        lines.append(oddity.replace(",", delimiter).replace("|", ",") if column is None and oddity
                     else delimiter.join(values))
    text = "id,pro_target,x,k,c,y,n,other\n".replace(",", delimiter) + "\n".join(lines)
    text = rng.choice(["", "\ufeff"]) + text.replace("\n", rng.choice(["\n", "\r\n"]))
    return text.encode("utf-8") + rng.choice([b"", b"\xff,1", b"\n"])


def test_fast_path_writes_what_the_row_wise_path_writes(tmp_path, monkeypatch):
    fast_chunks = []
    parse = scoring_csv.FastParser.parse
    monkeypatch.setattr(scoring_csv.FastParser, "parse", lambda *args: fast_chunks.append(
        parse(*args)) or fast_chunks[-1])
    rng = random.Random(7)
    oddities = ([(column, value) for value in ODD_VALUES for column in range(8)]
                + [(None, line) for line in ODD_LINES] * 4)
    rng.shuffle(oddities)
    odd = itertools.cycle(oddities)
    source = tmp_path / "in.csv"
    for case in range(60):
        delimiter = ";" if case % 3 == 0 else ","
        source.write_bytes(_messy_csv(rng, rng.choice([0, 1, 9, 10, 40, 40]),
                                      rng.choice([0, 0.3, 0.6]), delimiter, odd))
        settings = {"id_column": rng.choice(["id", "id", ""]),
                    "chunk_rows": rng.choice([1, 1, 2, 3, 10]),
                    "rule": rng.choice([scoring.SegmentRule("pro_target", 0.3, 0.6), None]),
                    "delimiter": delimiter, "decimal": "," if delimiter == ";" else "."}
        refuse = rng.random() < 0.2
        results = []
        for fast in (True, False):
            scorer = HashScorer(refuse)
            summary = scoring.score_csv(source, tmp_path / f"out{fast}.csv", scorer,
                                        progress=False, fast=fast, **settings)
            results.append((summary.output.read_bytes(), summary.rejects.read_bytes(),
                            summary.rows, summary.scored, summary.rejected, summary.by_segment,
                            repr(summary.probability_sum), scorer.calls))
        assert results[0] == results[1], (case, settings, source.read_bytes())
    assert sum(chunk is not None for chunk in fast_chunks) > 200


@pytest.mark.e2e
def test_sample_data_every_row_scored_and_summary_matches_file(pushed_project, tmp_path,
                                                                capsys):
    config, _ = pushed_project
    output = tmp_path / "scores.csv"
    code = tools_cli.main(["score", str(SAMPLE_CSV), str(output), "--model-dir",
                           str(config.model_serving_dir), "--chunk-rows", "7000",
                           "--churn-threshold", "0.4", "--conversion-threshold", "0.6"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    sample = pd.read_csv(SAMPLE_CSV)
    out = pd.read_csv(output)
    assert len(out) == len(sample) == 20000
    assert out["id"].tolist() == sample["id"].tolist()
    assert set(out["segment"]) <= set(CARTOLA_SEGMENTS) and out["segment"].notna().all()
    assert out["probability"].between(0, 1).all()
    pro = sample[config.label].to_numpy() == 1
    expected = np.select([pro & (out["probability"] < 0.4), ~pro & (out["probability"] > 0.6)],
                         ["churn_risk", "conversion_target"], "neither")
    assert (out["segment"].to_numpy() == expected).all()
    counts = out["segment"].value_counts()
    for segment in CARTOLA_SEGMENTS:  # the printed table matches the file
        match = re.search(rf"^{segment}\s+([\d,]+)\s", printed.out, re.MULTILINE)
        assert match and int(match[1].replace(",", "")) == counts.get(segment, 0), printed.out
    assert "scored 20,000 of 20,000 rows" in printed.out and "rejected 0" in printed.out
    assert len(pd.read_csv(tmp_path / "scores.rejects.csv")) == 0


@pytest.mark.e2e
def test_by_name_signature_gives_the_same_numbers_or_steps_aside(pushed_project):
    from cartola.serving.model import ServedModel  # pylint: disable=import-outside-toplevel
    config, result = pushed_project
    version = result["pushed_version"]
    model = ServedModel.load(config.model_serving_dir / str(version), version)
    sample = pd.read_csv(SAMPLE_CSV)
    columns = {name: sample[name].to_numpy(dtype=float) for name in model.features}
    assert any(np.isnan(values).any() for values in columns.values())  # missing values too
    by_name = model.predict_by_name(columns)
    assert np.array_equal(by_name, model.predict_columns(columns))  # bit for bit
    lists = {name: [None if np.isnan(v) else v for v in values.tolist()]
             for name, values in columns.items()}  # the row-wise path's form
    assert np.array_equal(model.predict_by_name(lists), by_name)
    ints = [name for name, feature in model.features.items() if feature.kind == "int"]
    if ints:  # float32 cannot hold this int exactly: the tf.Example path must score it
        huge = dict(columns, **{ints[0]: np.full(len(sample), 2.0 ** 25 + 1)})
        assert model.predict_by_name(huge) is None
    assert model.predict_by_name(dict(columns, **{next(iter(columns)): np.full(
        len(sample), 1e39)})) is None  # beyond float32
