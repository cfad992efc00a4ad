"""``cartola init``'s guesses that need no TFDV: the CSV dialect and id-like column names."""
import pytest

from cartola.data.init import ID_NAME, sniff_dialect


@pytest.mark.parametrize("text, expected", [
    ("a,b,c\n1,2.5,x\n", (",", ".")),
    ("\ufeffa;b;c\n1;2,5;x\n", (";", ",")),
    ("a;b\n1;2\n", (";", ".")),
    ("a\tb\n1\t2,5\n", ("\t", ",")),
    ("a,b\n\"1,5\",2\n", (",", ".")),  # a quoted comma in a ',' file is text, not a decimal
])
def test_sniff_dialect(tmp_path, text, expected):
    path = tmp_path / "a.csv"
    path.write_text(text, encoding="utf-8")
    assert sniff_dialect(path) == expected


def test_id_like_names():
    names = ["id", "customer_id", "userId", "ID", "user_ID", "PAID", "paid", "idade", "valid"]
    assert [name for name in names if ID_NAME.match(name)] == [
        "id", "customer_id", "userId", "ID", "user_ID"]
