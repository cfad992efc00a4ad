"""File checks before a run: one ``file:line: problem`` per malformed input."""
import pytest

from cartola.data.checks import check_input_dir
from cartola.errors import InputDataError


def test_accepts_csv_files_with_same_header(tmp_path):
    (tmp_path / "a.csv").write_text("id,x\n1,2\n")
    (tmp_path / "b.csv").write_text("id,x\n3,4\n")
    (tmp_path / "README.txt").write_text("ignored: CsvExampleGen reads *.csv only")
    assert [p.name for p in check_input_dir(tmp_path)] == ["a.csv", "b.csv"]


def test_accepts_bom_quoted_newlines_and_blank_lines(tmp_path):
    (tmp_path / "a.csv").write_bytes(b'\xef\xbb\xbfid,x\n1,"two\nlines"\n\n3,4\n')
    assert [p.name for p in check_input_dir(tmp_path)] == ["a.csv"]


def test_semicolon_file_is_read_with_its_dialect(tmp_path):
    (tmp_path / "a.csv").write_text("id;x\n1;3,5\n2;4\n")
    assert check_input_dir(tmp_path, delimiter=";", decimal=",")


@pytest.mark.parametrize("files, message", [
    ({}, r"no \*.csv file"),
    ({"a.csv": ""}, r"a.csv:1: empty file"),
    ({"a.csv": "id,x\n"}, r"a.csv:2: header only"),
    ({"a.csv": "id,x\n1,2\n", "b.csv": "id,y\n1,2\n"},
     r"b.csv:1: header differs from a.csv: lacks \['x'\] and has extra \['y'\]"),
    ({"a.csv": "id,x\n1,2\n", "b.csv": "x,id\n2,1\n"},
     r"b.csv:1: same columns as a.csv in another order \(column 1 is 'x' here, 'id' there\)"),
    ({"a.csv": "id,x,id\n1,2,3\n"}, r"a.csv:1: duplicated column name 'id' \(columns 1 and 3\)"),
    ({"a.csv": "id,,y\n1,2,3\n"}, r"a.csv:1: column 2 of the header has no name"),
    ({"a.csv": "id,x,y\n1,2,3\n4,5\n6,7,8\n9\n"},
     r"a.csv:3: 2 fields where the header has 3 .* lines with another field count: 3 \(2\), "
     r"5 \(1\)$"),
    ({"a.csv": "id;x;y\n1;2,5;3\n"},
     r"a.csv:1: the header is one column with delimiter ',' but 3 columns with ';': set "
     r"csv_delimiter = ';'"),
])
def test_rejects_with_file_line_and_problem(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(InputDataError, match=message):
        check_input_dir(tmp_path)


def test_decimal_comma_needs_the_decimal_setting(tmp_path):
    (tmp_path / "a.csv").write_text("id;x\n1;2\n2;3,5\n")
    with pytest.raises(InputDataError, match=r"a.csv:3: column 'x' holds '3,5', a number with "
                                             r"a decimal comma: set csv_decimal = ','"):
        check_input_dir(tmp_path, delimiter=";")


def test_not_utf8_names_line_byte_and_fix(tmp_path):
    (tmp_path / "a.csv").write_bytes("id,cidade\n1,Sao Paulo\n2,Bras\u00edlia\n".encode("cp1252"))
    with pytest.raises(InputDataError, match=r"a.csv:3: not UTF-8: byte 0xed at column 7 "
                                             r"\(it reads as Latin-1/Windows-1252\)"):
        check_input_dir(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputDataError, match="input folder not found"):
        check_input_dir(tmp_path / "nope")


def test_reads_each_file_in_one_streaming_pass(tmp_path):
    """Memory stays flat: the check holds one record at a time, not the file."""
    import tracemalloc  # pylint: disable=import-outside-toplevel
    with open(tmp_path / "big.csv", "w", encoding="utf-8") as handle:
        handle.write("id,a,b,c\n")
        for i in range(200_000):
            handle.write(f"{i},{i * 0.5},{i % 7},x{i % 13}\n")
    tracemalloc.start()
    check_input_dir(tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = (tmp_path / "big.csv").stat().st_size
    assert peak < size / 20, (peak, size)
