"""Labels as exported: obvious pairs, the coding, and the per-row check."""
from __future__ import annotations

import pytest

from cartola.data.checks import check_input_dir, check_text, min_rows
from cartola.data.labels import LabelCoding, guess_positive
from cartola.errors import InputDataError


@pytest.mark.parametrize("values, expected", [
    (["Yes", "No", "No"], ("Yes", "No")), (["no", "yes"], ("yes", "no")),
    (["TRUE", "FALSE"], ("TRUE", "FALSE")), (["n", "y"], ("y", "n")), (["0", "1"], ("1", "0")),
    (["good", "bad"], (None, None)), (["Remote", "Not remote"], (None, None)),
    (["yes", "no", "maybe"], (None, None))])
def test_obvious_pairs_only(values, expected):
    assert guess_positive(values) == expected


def test_coding_maps_and_refuses_a_third_value():
    coding = LabelCoding("churn", "Yes", "No")
    assert coding.encode_column(["Yes", "No", "", " Yes"]) == ["1", "0", "", "1"]
    assert coding.problem("No") is None and coding.problem("") is None
    assert coding.problem("maybe") == ("label 'churn' holds 'maybe', neither 'Yes' "
                                       "(positive_label) nor 'No' (negative_label)")
    assert not LabelCoding("churn").active and LabelCoding("churn").problem("7") is None
    assert coding.scores() == "the probability that churn is 'Yes'"


def test_file_checks_name_the_line_of_a_third_label_value(tmp_path):
    (tmp_path / "a.csv").write_text("x,churn\n1,Yes\n2,No\n3,maybe\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"a.csv:4: label 'churn' holds 'maybe'"):
        check_input_dir(tmp_path, label=LabelCoding("churn", "Yes", "No"))
    assert check_input_dir(tmp_path, label=LabelCoding("churn", "Yes")) == [tmp_path / "a.csv"]


def test_too_few_rows_and_binary_bytes(tmp_path):
    assert min_rows(100, 3, 1) == 440 and min_rows(0, 3, 1) == 0
    (tmp_path / "a.csv").write_text("x,y\n1,0\n2,1\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"a.csv: 2 data rows; the pipeline needs at "
                                             r"least 440"):
        check_input_dir(tmp_path, fewest_rows=440)
    for name, data in (("b.csv", bytes(range(256)) * 800), ("c.csv", b"x" * (2 << 20)),
                       ("d.csv", b"\x1f\x8b\x08\x00" + b"a,b\n" * 100)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputDataError, match=rf"{name}: not a CSV text file"):
            check_text(tmp_path / name)
