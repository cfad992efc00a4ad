"""``cartola init``: propose a config and a curated schema for a new tabular data set.

From a CSV file or a folder of them and the name of its label, write ``<dir>/config.toml``
and ``<dir>/schema.pbtxt`` for the user to review before ``cartola run``. The proposal reads
the data the way the pipeline will: the file checks first, then TFDV statistics (the same
column type inference as CsvExampleGen), then the rows themselves
(:mod:`cartola.data.columns`). A label exported as two words gets a ``positive_label`` (the
obvious side of yes/no, true/false, y/n, or the one ``--positive-label`` names). Numeric
columns become numeric features and string columns of modest cardinality categorical ones; a
column named like an id whose values look unique is the id column; columns empty everywhere,
text that is nearly unique per row, integer keys, codes and times, ``--exclude``d columns, and
columns that alone predict the label almost perfectly (probable leaks, unless ``--keep``) are
left out, each with the reason in the config (the schema marks an empty column deprecated, so
validation does not require it). Nothing Cartola-specific is proposed: no clipping, no slice,
no segments.
"""
from __future__ import annotations

import csv
import re
import shlex
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from cartola.config import Config
from cartola.data import checks
from cartola.data.columns import LEAK_AUC, integer_role, text_role
from cartola.data.columns import leaks as columns_leaks
from cartola.data.labels import LabelCoding, guess_positive
from cartola.data.spans import latest_folder
from cartola.errors import InputDataError

# A string column with more distinct values than this share of rows is free text or a key.
MAX_CATEGORICAL_SHARE = 0.5
MAX_CATEGORICAL_VALUES = 1000
ID_NAME = re.compile(r"^(id|ID|Id|.*_id|.*_ID|id_.*|[a-z]+Id)$")
# Rows read for the column roles (keys, codes, leaks): enough to see them, cheap on millions.
MAX_READ_ROWS = 200_000
# Folder names that say nothing about the data: the name comes from the folder above.
GENERIC_FOLDER = re.compile(r"^(train|training|data|dataset|csv|export|exports|input|raw|"
                            r"files|snapshot=.*|span=.*|\d+)$", re.IGNORECASE)


def sniff_dialect(path: Path) -> Tuple[str, str]:
    """(delimiter, decimal mark) of a CSV file, from its header and first rows."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        sample = [line for _, line in zip(range(200), handle)]
    header = sample[0] if sample else ""
    delimiter = max(checks.CANDIDATE_DELIMITERS,
                    key=lambda d: (len(next(csv.reader([header], delimiter=d), [])),
                                   d == ","))
    decimal = "."
    if delimiter != ",":
        for record in csv.reader(sample[1:], delimiter=delimiter):
            if any(checks.DECIMAL_COMMA.match(value) for value in record):
                decimal = ","
                break
    return delimiter, decimal


def _normalized_copy(files: List[Path], delimiter: str, decimal: str, folder: Path,
                     coding: Optional[LabelCoding] = None) -> Path:
    """The files rewritten as the pipeline's ExampleGen reads them: ',' and '.', and the
    label as 1/0 (TFDV's CSV reader knows the delimiter, not the decimal comma)."""
    for path in files:
        with open(path, newline="", encoding="utf-8-sig") as source, \
                open(folder / path.name, "w", newline="", encoding="utf-8") as target:
            writer = csv.writer(target)
            reader = csv.reader(source, delimiter=delimiter)
            header = [name.strip() for name in next(reader)]
            writer.writerow(header)
            index = header.index(coding.column) if coding is not None and coding.active else -1
            for record in reader:
                if decimal == ",":
                    record = [value.replace(",", ".") if checks.DECIMAL_COMMA.match(value)
                              else value for value in record]
                if index >= 0 and record:
                    record[index] = coding.encode(record[index])
                writer.writerow(record)
    return folder


def _statistics(data_dir: Path, files: List[Path], delimiter: str, decimal: str,
                coding: LabelCoding):
    """TFDV statistics of every CSV file in ``data_dir``, read as the pipeline reads them."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory(prefix="cartola_init_") as tmp:
        folder = (_normalized_copy(files, delimiter, decimal, Path(tmp), coding)
                  if (delimiter, decimal) != (",", ".") or coding.active else data_dir)
        return tfdv.generate_statistics_from_csv(str(folder / "*.csv"))


def read_frame(files: List[Path], delimiter: str, decimal: str) -> pd.DataFrame:
    """Up to MAX_READ_ROWS rows of the files (text kept as text), for the column roles."""
    frames, rows = [], 0
    for path in files:
        frame = pd.read_csv(path, sep=delimiter, decimal=decimal, encoding="utf-8-sig",
                            nrows=MAX_READ_ROWS - rows, skipinitialspace=True,
                            keep_default_na=False, na_values=[""])
        frame.columns = [str(name).strip() for name in frame.columns]
        frames.append(frame)
        rows += len(frame)
        if rows >= MAX_READ_ROWS:
            break
    return pd.concat(frames, ignore_index=True)


def labelled_rows(files: List[Path], delimiter: str, decimal: str, label: str,
                  positive: Optional[str]) -> Tuple[pd.DataFrame, LabelCoding]:
    """The rows init reads (label as 1/0, rows without one dropped) and the label's coding."""
    frame = read_frame(files, delimiter, decimal)
    if label not in frame.columns:
        raise InputDataError(f"label {label!r} is not a column of {files[0]}; columns: "
                             f"{sorted(frame.columns)}")
    coding = label_coding(frame[label], label, positive)
    if coding.active:
        frame[label] = frame[label].astype(str).map(coding.encode).replace("", None)
    frame = frame[frame[label].notna()].copy()
    frame[label] = frame[label].astype(int)
    return frame, coding


def label_coding(values: pd.Series, label: str,
                 positive: Optional[str] = None) -> LabelCoding:
    """How the label column becomes 1/0: as written when it holds 0 and 1; else the
    ``positive`` value, or the obvious side of a yes/no pair. Raises InputDataError naming
    the values found and the flag to use."""
    present = values.dropna()
    texts = sorted({str(value).strip() for value in present} - {""})
    if not texts:
        raise InputDataError(f"label {label!r} is empty in every row")
    if positive is not None:
        if positive not in texts:
            raise InputDataError(f"--positive-label {positive!r}: label {label!r} holds "
                                 f"{_listed(texts)}")
        if len(texts) != 2:
            raise InputDataError(f"label {label!r} holds {len(texts)} values "
                                 f"({_listed(texts)}); a binary label needs exactly two")
        return LabelCoding(label, positive, next(text for text in texts if text != positive))
    if pd.api.types.is_integer_dtype(present) and set(present.unique()) <= {0, 1}:
        if len(texts) != 2:
            raise InputDataError(f"label {label!r} holds only {texts[0]}; a classifier needs "
                                 "both classes")
        return LabelCoding()
    if len(texts) != 2:
        raise InputDataError(f"label {label!r} holds {len(texts)} distinct values "
                             f"({_listed(texts)}); a binary label needs exactly two")
    guessed, negative = guess_positive(texts)
    if guessed is None:
        raise InputDataError(
            f"label {label!r} holds {texts[0]!r} and {texts[1]!r}: say which is the outcome "
            f"to predict with --positive-label {shlex.quote(texts[0])} (or --positive-label "
            f"{shlex.quote(texts[1])})")
    return LabelCoding(label, guessed, negative)


def _listed(values: List[str], most: int = 5) -> str:
    shown = ", ".join(repr(value) for value in values[:most])
    return shown + (f" and {len(values) - most:,} more" if len(values) > most else "")


def _kind(feature) -> str:
    """'int', 'float', 'string' or 'empty' (no value anywhere)."""
    kind = feature.WhichOneof("stats")
    if kind == "num_stats":
        if feature.num_stats.common_stats.num_non_missing == 0:
            return "empty"
        return "int" if feature.type == 0 else "float"
    if kind == "string_stats" and feature.string_stats.common_stats.num_non_missing > 0:
        return "string"
    return "empty"


def propose(statistics, label: str, id_column: Optional[str] = None,
            frame: Optional[pd.DataFrame] = None, exclude: Sequence[str] = (),
            keep: Sequence[str] = ()) -> Dict[str, object]:
    """Config values (label, id, features) and notes on the columns left out. ``frame``
    (the rows, label already 1/0) lets it tell keys, codes, times and leaks apart."""
    dataset = statistics.datasets[0]
    total = dataset.num_examples
    columns = {(f.path.step[0] if f.path.step else f.name): f for f in dataset.features}
    if label not in columns:
        raise InputDataError(f"label {label!r} is not a column; columns: {sorted(columns)}")
    label_stats = columns[label]
    if _kind(label_stats) != "int" or label_stats.num_stats.min < 0 \
            or label_stats.num_stats.max > 1:
        raise InputDataError(f"label {label!r} must hold the integers 0 and 1 (found "
                             f"{_kind(label_stats)} values); recode it first")
    unknown = [name for name in list(exclude) + list(keep) if name not in columns]
    if unknown:
        raise InputDataError(f"--exclude/--keep name {unknown}, which are not columns; "
                             f"columns: {sorted(columns)}")
    kinds = {name: _kind(feature) for name, feature in columns.items()}
    if id_column is None:
        id_column = next((name for name in columns if name != label and ID_NAME.match(name)
                          and kinds[name] in ("int", "string")
                          and _looks_unique(columns[name], total)), "")
    elif id_column and id_column not in columns:
        raise InputDataError(f"id column {id_column!r} is not a column")
    numeric, categorical, notes = [], [], []
    for name, kind in kinds.items():
        if name in (label, id_column):
            continue
        why = _left_out(name, kind, columns[name], total, frame, exclude)
        if why:
            notes.append(f"{name}: {why}")
        elif kind in ("int", "float"):
            numeric.append(name)
        else:
            categorical.append(name)
    leaked = _leave_out_leaks(frame, label, numeric, categorical, notes, keep)
    return {"label": label, "id_column": id_column, "numeric_features": numeric,
            "categorical_features": categorical, "notes": notes, "leaks": leaked,
            "empty": [name for name, kind in kinds.items() if kind == "empty"]}


def _leave_out_leaks(frame: Optional[pd.DataFrame], label: str, numeric: List[str],
                     categorical: List[str], notes: List[str],
                     keep: Sequence[str]) -> Dict[str, float]:
    """Probable leaks among the features, taken out of them (unless kept) with a note."""
    if frame is None or label not in frame:
        return {}
    leaked = columns_leaks(frame, frame[label].to_numpy(), numeric + categorical)
    for name, auc in leaked.items():
        if name in keep:
            continue
        (numeric if name in numeric else categorical).remove(name)
        notes.append(f"{name}: alone it ranks the label with AUC {auc:.3f} (>= {LEAK_AUC}): a "
                     f"probable leak (computed from the label, or recorded after it); "
                     f"--keep {name} keeps it")
    return leaked


def _left_out(name: str, kind: str, stats, total: int, frame: Optional[pd.DataFrame],
              exclude: Sequence[str]) -> Optional[str]:
    """Why a column is no feature, or None."""
    if name in exclude:
        return "excluded (--exclude)"
    if kind == "empty":
        return "empty in every row"
    values = frame[name] if frame is not None and name in frame else None
    if kind == "int" and values is not None:
        return integer_role(name, values)
    if kind == "string":
        unique = stats.string_stats.unique
        if unique > MAX_CATEGORICAL_VALUES or unique > MAX_CATEGORICAL_SHARE * total:
            return f"{unique:,} distinct strings in {total:,} rows (free text or a key)"
        if values is not None:
            return text_role(name, values)
    return None


def _looks_unique(feature, total: int) -> bool:
    if feature.WhichOneof("stats") == "string_stats":
        return feature.string_stats.unique == total
    # TFDV keeps no distinct count for numbers; an integer id column is never missing.
    return feature.num_stats.common_stats.num_non_missing == total


def _toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return str(value)


def config_text(target: Path, data_dir: Path, name: str, proposal: Dict[str, object],
                delimiter: str, decimal: str) -> str:
    """The proposed config.toml."""
    coding: LabelCoding = proposal["coding"]
    values = {
        "project_home": str(target), "pipeline_name": name, "model_name": name,
        "data_root": str(data_dir), "schema_path": "schema.pbtxt",
        "label": proposal["label"], "id_column": proposal["id_column"],
    }
    if coding.active:
        values.update(positive_label=coding.positive, negative_label=coding.negative)
    values.update({
        "csv_delimiter": delimiter, "csv_decimal": decimal,
        "numeric_features": proposal["numeric_features"],
        "categorical_features": proposal["categorical_features"],
    })
    lines = [f"# Proposed by `cartola init` for {data_dir}: review it, then",
             f"#   cartola --config {target / 'config.toml'} run",
             "# Every other setting keeps its neutral default (see src/cartola/config.py)."]
    if coding.active:
        lines.append(f"# The label's {coding.positive!r} is read as 1 (the outcome the model "
                     f"scores), {coding.negative!r} as 0.")
    if proposal["notes"]:
        lines.append("# Columns left out of the features, and why:")
        lines.extend(f"#   {note}" for note in proposal["notes"])
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    lines.extend([
        "# A model is blessed when it beats the trivial one on the eval split (log loss below",
        "# the positive share's, AUC above 0.5 beyond the split's noise) and, once one is served,",
        "# does not regress against it. Absolute floors on eval KS and AUC, off by default:",
        "# min_ks = 0.4", "# min_auc = 0.7"])
    return "\n".join(lines) + "\n"


def data_files(data: Path) -> Tuple[Path, List[Path]]:
    """(data root for the config, the CSV files to propose from) of ``--data``: a CSV file
    (its folder is the data root, one span), a flat folder of CSV files, or span folders
    (the latest snapshot)."""
    if data.is_file():
        checks.check_text(data)
        if data.suffix.lower() != ".csv":
            raise InputDataError(f"{data}: the pipeline reads *.csv files; rename it or pass "
                                 "its folder")
        root, source = data.parent, data.parent
    else:
        root, source = data, latest_folder(data, Config().span_pattern)
    files = sorted(source.glob("*.csv")) if source.is_dir() else []
    if not files:
        checks.check_input_dir(source)  # raises the folder's problem
    for path in files:
        checks.check_text(path)  # before sniffing the dialect of bytes that are no text
    return root, files


def default_name(data_dir: Path) -> str:
    """The pipeline and model name: the data folder's, or its parent's when the folder has a
    generic name (train, data, csv, a snapshot=... span folder)."""
    folder = data_dir
    while folder.parent != folder and (GENERIC_FOLDER.match(folder.name) or not folder.name):
        folder = folder.parent
    return re.sub(r"[^A-Za-z0-9_]+", "_", folder.name).strip("_").lower() or "tabular"


def _outputs(target: Path, force: bool) -> Tuple[Path, Path]:
    """The config and schema paths under ``target``, refused when present unless forced."""
    paths = target / "config.toml", target / "schema.pbtxt"
    existing = [path for path in paths if path.exists()]
    if existing and not force:
        raise InputDataError(f"{existing[0]} exists; pass --force to replace it")
    return paths


def init_dataset(target: Path, data_dir: Path, label: str, id_column: Optional[str] = None,
                 force: bool = False, **choices) -> Tuple[Path, Path, Dict[str, object]]:
    """Write ``target/config.toml`` and ``target/schema.pbtxt``; returns their paths and the
    proposal. ``choices``: ``positive_label``, ``exclude``, ``keep`` (column lists) and
    ``name``."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_data_validation as tfdv

    from cartola.data.schema import curate
    target = target.expanduser().resolve()
    config_path, schema_path = _outputs(target, force)
    data_root, files = data_files(data_dir.expanduser().resolve())
    delimiter, decimal = sniff_dialect(files[0])
    checks.check_input_dir(files[0].parent, delimiter, decimal)
    frame, coding = labelled_rows(files, delimiter, decimal, label,
                                  choices.get("positive_label"))
    statistics = _statistics(files[0].parent, files, delimiter, decimal, coding)
    proposal = propose(statistics, label, id_column, frame, choices.get("exclude", ()),
                       choices.get("keep", ()))
    proposal["coding"] = coding
    schema = tfdv.infer_schema(statistics, infer_feature_shape=True)
    curate(schema, statistics, label)
    name = choices.get("name") or default_name(data_root)
    target.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(schema_path))
    config_path.write_text(config_text(target, data_root, name, proposal, delimiter, decimal),
                           encoding="utf-8")
    proposal["name"] = name
    return config_path, schema_path, proposal
