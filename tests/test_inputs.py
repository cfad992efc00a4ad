"""Pre-run checks of the input folder."""
import pytest

from cartola.errors import InputDataError
from cartola.inputs import check_input_dir


def test_accepts_csv_files_with_same_header(tmp_path):
    (tmp_path / "a.csv").write_text("id,x\n1,2\n")
    (tmp_path / "b.csv").write_text("id,x\n3,4\n")
    (tmp_path / "README.txt").write_text("ignored: CsvExampleGen reads *.csv only")
    assert [p.name for p in check_input_dir(tmp_path)] == ["a.csv", "b.csv"]


@pytest.mark.parametrize("files, message", [
    ({}, "no \\*.csv file"),
    ({"a.csv": ""}, "a.csv: empty file"),
    ({"a.csv": "id,x\n"}, "a.csv: header only"),
    ({"a.csv": "id,x\n1,2\n", "b.csv": "id,y\n1,2\n"}, "b.csv: header differs.*'x', 'y'"),
])
def test_rejects_with_file_named(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(InputDataError, match=message):
        check_input_dir(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputDataError, match="input folder not found"):
        check_input_dir(tmp_path / "nope")
