"""Batch scoring's CSV side: row-wise with csv, column-wise with pyarrow where that is identical."""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import functools
import io
import itertools
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from cartola.serving.model import RawFeature

# Bytes that make a block unsafe for the fast parser: quoting, NUL (a csv.Error); CR only
# where it does not end a line.
_UNSAFE_BYTES = (b'"', b"\0")
ASCII_SPACE = "".join(c for c in map(chr, range(128)) if c.isspace())
_ASCII_SPACES = tuple(space.encode() for space in ASCII_SPACE)
# With at most 15 digits (and no exponent) a number is an exact integer over an exact power
# of ten, so pandas' parser, Arrow's and Python's all give the correctly rounded double.
_MAX_NUMBER_CHARS = 15
# The status column's words, lower-cased: both paths read them from here.
TRUE_WORDS, FALSE_WORDS = ("1", "1.0", "true"), ("0", "0.0", "false")
_STATUS_WORDS = pa.array(TRUE_WORDS + FALSE_WORDS)
_READ_BYTES = 1 << 22


class CsvReadError(ValueError):
    """The file has no header, or an unreadable one."""


class ByteLines:
    """A binary file read in large blocks, consumed either as decoded lines (the row-wise
    path) or as blocks of whole lines (the fast path). ``consumed``: bytes used so far."""

    def __init__(self, handle):
        self._handle = handle
        self._buffer = b""
        self._start = 0
        self._eof = False
        self._line_bytes = 256  # estimated, for block()
        self.consumed = 0

    def _fill(self) -> bool:
        """Read more; False at the end of the file."""
        if self._eof:
            return False
        data = self._handle.read(max(_READ_BYTES, len(self._buffer) - self._start))
        if not data:
            self._eof = True
            return False
        self._buffer = self._buffer[self._start:] + data
        self._start = 0
        return True

    def line(self) -> bytes:
        """The next line with its ``\\n`` (the last may lack it); b"" at the end."""
        while True:
            end = self._buffer.find(b"\n", self._start)
            if end >= 0 or not self._fill():
                break
        end = len(self._buffer) if end < 0 else end + 1
        line = self._buffer[self._start:end]
        self._start = end
        self.consumed += len(line)
        return line

    def lines(self) -> Iterator[str]:
        """Decoded lines as a text file opened with ``newline="\\n"`` and ``errors="replace"``
        yields them ("\\n" is never part of a multi-byte character, so decoding line by line
        is decoding the stream); each counts as consumed once handed out."""
        while True:
            line = self.line()
            if not line:
                return
            yield line.decode("utf-8", "replace")

    def block(self, count: int) -> Tuple[bytes, np.ndarray, int]:
        """The next ``count`` lines (fewer at the end of the file), unconsumed: (bytes, the
        positions of their ``\n``, how many lines)."""
        window = count * self._line_bytes + 4096  # enough lines, mostly, without a full scan
        while True:
            view = np.frombuffer(self._buffer, np.uint8, count=min(
                window, len(self._buffer) - self._start), offset=self._start)
            ends = np.flatnonzero(view == 10)
            if len(ends) >= count:
                ends = ends[:count]
                self._line_bytes = max(16, int(ends[-1]) // count + 2)
                return self._buffer[self._start:self._start + int(ends[-1]) + 1], ends, count
            if window < len(self._buffer) - self._start:
                window *= 2
            elif not self._fill():
                partial = len(view) > (int(ends[-1]) + 1 if len(ends) else 0)
                return self._buffer[self._start:], ends, len(ends) + partial

    def skip(self, size: int) -> None:
        """Consume ``size`` bytes (a block taken by the fast path)."""
        self._start += size
        self.consumed += size


@dataclasses.dataclass
class FastChunk:
    """A chunk of clean lines: every row valid, columns checked as the row-wise path would."""

    first_line: int
    rows: int
    ids: pa.Array  # output ids (text), no quoting needed
    is_pro: Optional[np.ndarray]
    columns: Dict[str, np.ndarray]


@functools.lru_cache(maxsize=1)
def _edge_space_pattern() -> str:
    """A regex matching a value that ``str.strip`` would change."""
    spaces = "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(sys.maxunicode + 1))
                     if c.isspace())
    return f"^[{spaces}]|[{spaces}]$"


def _text(array: pa.Array) -> Tuple[bytes, np.ndarray]:
    """(all values' bytes, each value's length) of a string array; nulls are empty."""
    _, offsets, data = array.buffers()
    ends = np.frombuffer(offsets, np.int32, count=len(array) + 1, offset=array.offset * 4)
    raw = memoryview(data)[ends[0]:ends[-1]].tobytes() if data is not None else b""
    return raw, np.diff(ends)


def _unstripped(array: pa.Array, raw: bytes) -> bool:
    """Whether some value has leading or trailing whitespace."""
    if raw.isascii() and not any(space in raw for space in _ASCII_SPACES):
        return False
    matches = pc.match_substring_regex(  # pylint: disable=no-member
        array, _edge_space_pattern())
    return bool(pc.any(matches).as_py())  # pylint: disable=no-member


class FastParser:
    """Parses a block of lines into a :class:`FastChunk`, or says (None) that the row-wise
    path must read it: quotes, a CR but before a line's end, NUL, blank lines, a wrong field
    count, invalid UTF-8, or any value the row-wise checks would not take as is (a missing
    required value, whitespace around a value, a number beyond the plain ``-123.45`` form, a
    status other than the lowercase 0/1 words...). What it accepts, it reads exactly as the
    row-wise path does."""

    # pylint: disable-next=too-many-arguments
    def __init__(self, header: Sequence[str], features: Mapping[str, RawFeature],
                 id_column: str, status_column: str, delimiter: str, decimal: str):
        self._features = features
        self._keys = (id_column, status_column)
        self._decimal = decimal
        self._names = [f"c{i}" for i in range(len(header))]
        self._name = {name: self._names[header.index(name)] for name in
                      [n for n in self._keys if n] + list(features)}
        self._parse = pa_csv.ParseOptions(delimiter=delimiter, quote_char=False,
                                          double_quote=False, escape_char=False,
                                          newlines_in_values=False, ignore_empty_lines=False)
        self._convert = pa_csv.ConvertOptions(
            include_columns=list(dict.fromkeys(self._name.values())),
            column_types={name: pa.string() for name in self._name.values()},
            strings_can_be_null=True, null_values=[""], check_utf8=True)

    @staticmethod
    def usable(delimiter: str) -> bool:
        """Whether the fast path can split on ``delimiter`` exactly as the csv module does."""
        return delimiter == "\t" or (delimiter.isascii() and delimiter.isprintable())

    def parse(self, block: bytes, ends: np.ndarray, rows: int,
              first_line: int) -> Optional[FastChunk]:
        """The block's rows checked, or None if the row-wise path must read it. ``ends``: the
        positions of the block's ``\\n``."""
        table = self._table(block, ends, rows)
        if table is None:
            return None
        column = {name: table.column(arrow_name).combine_chunks()
                  for name, arrow_name in self._name.items()}
        columns: Dict[str, np.ndarray] = {}
        for name, feature in self._features.items():
            values = (self._strings(column[name], feature) if feature.kind == "string"
                      else self._numbers(column[name], feature))
            if values is None:
                return None
            columns[name] = values
        id_column, status_column = self._keys
        is_pro = None
        if status_column:
            word = pc.index_in(  # pylint: disable=no-member
                column[status_column], value_set=_STATUS_WORDS)
            if word.null_count:  # missing, or not one of the words
                return None
            is_pro = word.to_numpy() < len(TRUE_WORDS)
        if id_column:
            ids = column[id_column]
            raw, _ = _text(ids)
            # A comma would make the csv module quote the id in the output.
            if ids.null_count or b"," in raw or _unstripped(ids, raw):
                return None
        else:
            ids = pc.cast(pa.array(np.arange(first_line, first_line + rows)), pa.string())
        return FastChunk(first_line, rows, ids, is_pro, columns)

    def _table(self, block: bytes, ends: np.ndarray, rows: int) -> Optional[pa.Table]:
        """The block's columns as text (None: missing), or None if not plain lines."""
        # Arrow drops a BOM at the start of its input, where csv keeps it as data.
        if (not rows or block.startswith(b"\xef\xbb\xbf")
                or any(unsafe in block for unsafe in _UNSAFE_BYTES)):
            return None
        view = np.frombuffer(block, np.uint8)
        lengths = np.diff(ends, prepend=-1) - 1
        crlf = (view[ends - 1] == 13) & (lengths > 0)
        # A blank line ("" or a lone CR), or a CR anywhere but before a line's \n.
        if (lengths == crlf).any() or np.count_nonzero(view == 13) != np.count_nonzero(crlf):
            return None
        try:
            # Not read_csv: on Python 3.10 each call scans every object the garbage collector
            # tracks (pyarrow's workaround for bpo-42248), TensorFlow's heap included.
            read = pa_csv.ReadOptions(column_names=self._names, use_threads=False,
                                      block_size=len(block) + 1)  # one chunk per column
            table = pa_csv.open_csv(pa.py_buffer(block), read_options=read,
                                    parse_options=self._parse,
                                    convert_options=self._convert).read_all()
        except pa.ArrowException:  # e.g. a wrong field count: the row-wise path says which
            return None
        return table if table.num_rows == rows else None

    @staticmethod
    def _strings(array: pa.Array, feature: RawFeature) -> Optional[np.ndarray]:
        if feature.required and array.null_count:
            return None
        raw, _ = _text(array)
        if _unstripped(array, raw):
            return None
        return array.to_numpy(zero_copy_only=False)

    def _numbers(self, array: pa.Array, feature: RawFeature) -> Optional[np.ndarray]:
        if feature.required and array.null_count:
            return None
        raw, lengths = _text(array)
        if raw.translate(None, b"0123456789-" + self._decimal.encode()) or (
                len(lengths) and lengths.max() > _MAX_NUMBER_CHARS):
            return None
        if self._decimal != ".":
            array = pc.replace_substring(array, self._decimal, ".")  # pylint: disable=no-member
        try:
            values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowException:
            return None
        # "-0" is 0 or -0.0 in pandas depending on the column's other values.
        zeros = values == 0
        if zeros.any() and np.signbit(values[zeros]).any():
            return None
        if feature.kind == "int" and self._decimal.encode() in raw:
            present = values[~np.isnan(values)]
            if (present != np.trunc(present)).any():
                return None
        return values


def csv_field(value: str) -> str:
    """``value`` as :mod:`csv` writes it as a field (not the first) of a row."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["", value])
    return buffer.getvalue()[1:-2]


def format_probabilities(probabilities: np.ndarray, suffix: str = "") -> pa.Array:
    """``f"{p:.6f}{suffix}"`` of each value. Digits are computed with numpy where the scaled
    value is clearly away from a rounding tie (its error is below 1e-9); Python formats the
    other values, and the whole batch when they do not fit the ``d.dddddd`` width."""
    def python() -> pa.Array:
        return pa.array([f"{p:.6f}{suffix}" for p in probabilities.tolist()], pa.string())

    with np.errstate(invalid="ignore"):
        scaled = probabilities * 1e6
        whole = np.floor(scaled)
        fraction = scaled - whole
        exact = ((probabilities >= 0) & ~np.signbit(probabilities) & (scaled < 9_999_999)
                 & (np.abs(fraction - 0.5) > 1e-6))
    others = np.flatnonzero(~exact)
    if len(others) > len(probabilities) // 100:
        return python()
    units = np.where(exact, whole + (fraction > 0.5), 0).astype(np.int64)
    tail = np.frombuffer(suffix.encode(), np.uint8)
    width = 8 + len(tail)
    text = np.empty((len(units), width), np.uint8)
    text[:, 0] = units // 1_000_000 + ord("0")
    text[:, 1] = ord(".")
    rest = units % 1_000_000
    for position in range(7, 1, -1):
        text[:, position] = rest % 10 + ord("0")
        rest //= 10
    text[:, 8:] = tail
    for row in others.tolist():
        value = f"{probabilities[row]:.6f}{suffix}".encode()
        if len(value) != width:
            return python()
        text[row] = np.frombuffer(value, np.uint8)
    offsets = np.arange(0, width * len(units) + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(len(units), pa.py_buffer(offsets), pa.py_buffer(text))


def output_bytes(columns: List[pa.Array]) -> memoryview:
    """CSV lines (``\\r\\n``-terminated, as :mod:`csv` writes them) of text columns whose
    values need no quoting; the last column carries the line terminator."""
    lines = pc.binary_join_element_wise(*columns, ",")  # pylint: disable=no-member
    _, offsets, data = lines.buffers()
    ends = np.frombuffer(offsets, np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(data)[ends[0]:ends[-1]] if data is not None else memoryview(b"")


class Chunk:
    """Records of one chunk with their line numbers."""

    def __init__(self):
        self.lines: List[int] = []
        self.records: List[Tuple[str, ...]] = []


class CsvRecords:  # pylint: disable=too-many-instance-attributes
    """A CSV file's header, then chunks: :class:`FastChunk` where the fast path can read the
    next ``chunk_rows`` lines, else a :class:`Chunk` of well-formed records read with
    :mod:`csv`, malformed records (blank, wrong field count, unreadable) appended to ``bad``
    as (line, id, reason). Both make the same chunks (``chunk_rows`` well-formed records).
    Lines are decoded as UTF-8 (bad bytes replaced), the header's BOM dropped. A context
    manager: the file stays open until the block ends."""

    def __init__(self, path: Path, chunk_rows: int, id_column: str, delimiter: str = ","):
        self.bad: List[Tuple[int, str, str]] = []
        self.malformed = 0
        self._chunk_rows = chunk_rows
        self._delimiter = delimiter
        self._fast: Optional[FastParser] = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending: Optional[concurrent.futures.Future] = None
        self._misses = self._skip = 0
        self._file = open(path, "rb")  # pylint: disable=consider-using-with
        self._source = ByteLines(self._file)
        try:
            first = self._source.line()
            if not first:
                raise CsvReadError(f"{path} is empty")
            reader = csv.reader(itertools.chain(
                [first.decode("utf-8", "replace").lstrip("\ufeff")], self._source.lines()),
                delimiter=delimiter)
            try:
                self.header = [h.strip() for h in next(reader)]
            except csv.Error as err:
                raise CsvReadError(f"{path}: cannot read the header: {err}") from err
        except BaseException:
            self.close()
            raise
        self._line = reader.line_num  # physical lines read so far
        self._id_index = self.header.index(id_column) if id_column in self.header else None

    def use_fast_path(self, features: Mapping[str, RawFeature], id_column: str,
                      status_column: str, decimal: str) -> None:
        """Read clean chunks with the fast path (once the header has been checked)."""
        if FastParser.usable(self._delimiter):
            self._fast = FastParser(self.header, features, id_column, status_column,
                                    self._delimiter, decimal)

    @property
    def bytes_read(self) -> int:
        """Bytes read so far, for the progress bar."""
        return self._source.consumed

    def __enter__(self) -> "CsvRecords":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the background parse, if any, and close the file."""
        self._executor.shutdown()
        self._file.close()

    def __iter__(self) -> Iterator[Union[Chunk, FastChunk]]:
        while True:
            fast = self._fast_chunk()
            if fast is not None:
                yield fast
                continue
            chunk, ended = self._record_chunk()
            if chunk.records:
                yield chunk
            if ended:
                return

    def _fast_chunk(self) -> Optional[FastChunk]:
        """The next chunk by the fast path, or None (nothing consumed). The block after a
        fast chunk is parsed in a thread while that chunk is scored (TensorFlow leaves part of
        the second core idle). After consecutive misses the next tries wait for 1, 3, 7...
        chunks (up to 63), so a file the fast path cannot read costs little more than the
        row-wise path alone."""
        if self._fast is None:
            return None
        if self._skip:
            self._skip -= 1
            return None
        pending, self._pending = self._pending, None
        size, lines, chunk = (pending or self._executor.submit(self._parse_next)).result()
        if chunk is None:
            self._skip = min(2 ** self._misses - 1, 63)
            self._misses += 1
            return None
        self._misses = 0
        self._source.skip(size)
        self._line += lines
        self._pending = self._executor.submit(self._parse_next)
        return chunk

    def _parse_next(self) -> Tuple[int, int, Optional[FastChunk]]:
        """(bytes, lines, chunk or None) of the next block; consumes nothing."""
        block, ends, lines = self._source.block(self._chunk_rows)
        chunk = self._fast.parse(block, ends, lines, self._line + 1) if lines else None
        return len(block), lines, chunk

    def _record_chunk(self) -> Tuple[Chunk, bool]:
        """The next chunk read with :mod:`csv`, and whether the file ended."""
        reader, width, size = csv.reader(self._source.lines(), delimiter=self._delimiter), len(
            self.header), self._chunk_rows
        base = previous = self._line
        chunk = Chunk()
        while True:
            try:
                for record in reader:  # the per-record loop: kept lean
                    line, previous = previous + 1, base + reader.line_num
                    if len(record) == width:
                        chunk.lines.append(line)
                        # A tuple of strings drops out of the garbage collector's tracking at
                        # its first pass; a list never does, and a chunk of live lists set off
                        # full collections over TensorFlow's heap (a fifth of the run).
                        chunk.records.append(tuple(record))
                        if len(chunk.records) >= size:
                            self._line = previous
                            return chunk, False
                    elif not record:
                        self._malformed(line, "", "blank line")
                    else:
                        row_id = (record[self._id_index].strip() if self._id_index is not None
                                  and self._id_index < len(record) else "")
                        self._malformed(line, row_id,
                                        f"expected {width} fields, found {len(record)}")
                break
            except csv.Error as err:  # e.g. a NUL byte; the reader resumes on the next line
                self._malformed(previous + 1, "", f"unreadable CSV: {err}")
                previous = base + reader.line_num
        self._line = previous
        return chunk, True

    def _malformed(self, line: int, row_id: str, reason: str) -> None:
        self.malformed += 1
        self.bad.append((line, row_id, reason))
