"""``cartola init``: propose a config and a curated schema for a new tabular data set.

From a folder of CSV files and the name of its 0/1 label, write ``<dir>/config.toml`` and
``<dir>/schema.pbtxt`` for the user to review before ``cartola run``. The proposal reads the
data the way the pipeline will: the file checks first, then TFDV statistics (the same column
type inference as CsvExampleGen). Numeric columns become numeric features and string columns
of modest cardinality categorical ones; a column named like an id whose values look unique is
the id column; columns empty everywhere, and text that is nearly unique per row, are left out
(the schema marks an empty column deprecated, so validation does not require it). Nothing
Cartola-specific is proposed: no clipping, no slice, no segments.
"""
from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from cartola.config import Config
from cartola.data import checks
from cartola.data.spans import latest_folder
from cartola.errors import InputDataError

# A string column with more distinct values than this share of rows is free text or a key.
MAX_CATEGORICAL_SHARE = 0.5
MAX_CATEGORICAL_VALUES = 1000
ID_NAME = re.compile(r"^(id|ID|Id|.*_id|.*_ID|id_.*|[a-z]+Id)$")


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


def _normalized_copy(files: List[Path], delimiter: str, decimal: str, folder: Path) -> Path:
    """The files rewritten with ',' and '.' (what the pipeline's ExampleGen reads them as),
    for TFDV, whose CSV reader knows the delimiter but not the decimal comma."""
    for path in files:
        with open(path, newline="", encoding="utf-8-sig") as source, \
                open(folder / path.name, "w", newline="", encoding="utf-8") as target:
            writer = csv.writer(target)
            for record in csv.reader(source, delimiter=delimiter):
                if decimal == ",":
                    record = [value.replace(",", ".") if checks.DECIMAL_COMMA.match(value)
                              else value for value in record]
                writer.writerow(record)
    return folder


def _statistics(data_dir: Path, delimiter: str, decimal: str):
    """TFDV statistics of every CSV file in ``data_dir``, read as the pipeline reads them."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    files = checks.check_input_dir(data_dir, delimiter, decimal)
    with tempfile.TemporaryDirectory(prefix="cartola_init_") as tmp:
        folder = (_normalized_copy(files, delimiter, decimal, Path(tmp))
                  if (delimiter, decimal) != (",", ".") else data_dir)
        return tfdv.generate_statistics_from_csv(str(folder / "*.csv"))


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


def propose(statistics, label: str, id_column: Optional[str] = None) -> Dict[str, object]:
    """Config values (label, id, features) and notes on the columns left out."""
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
        if kind == "empty":
            notes.append(f"{name}: empty in every row")
        elif kind in ("int", "float"):
            numeric.append(name)
        else:
            unique = columns[name].string_stats.unique
            if unique > MAX_CATEGORICAL_VALUES or unique > MAX_CATEGORICAL_SHARE * total:
                notes.append(f"{name}: {unique:,} distinct strings in {total:,} rows (free "
                             "text or a key)")
            else:
                categorical.append(name)
    return {"label": label, "id_column": id_column, "numeric_features": numeric,
            "categorical_features": categorical, "notes": notes,
            "empty": [name for name, kind in kinds.items() if kind == "empty"]}


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
    values = {
        "project_home": str(target), "pipeline_name": name, "model_name": name,
        "data_root": str(data_dir), "schema_path": "schema.pbtxt",
        "label": proposal["label"], "id_column": proposal["id_column"],
        "csv_delimiter": delimiter, "csv_decimal": decimal,
        "numeric_features": proposal["numeric_features"],
        "categorical_features": proposal["categorical_features"],
    }
    lines = [f"# Proposed by `cartola init` for {data_dir}: review it, then",
             f"#   cartola --config {target / 'config.toml'} run",
             "# Every other setting keeps its neutral default (see src/cartola/config.py)."]
    if proposal["notes"]:
        lines.append("# Columns left out of the features:")
        lines.extend(f"#   {note}" for note in proposal["notes"])
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    lines.extend([
        "# A model is blessed when it beats the trivial one on the eval split (log loss below",
        "# the positive share's, AUC above 0.5 beyond the split's noise) and, once one is served,",
        "# does not regress against it. Absolute floors on eval KS and AUC, off by default:",
        "# min_ks = 0.4", "# min_auc = 0.7"])
    return "\n".join(lines) + "\n"


def init_dataset(target: Path, data_dir: Path, label: str, id_column: Optional[str] = None,
                 force: bool = False) -> Tuple[Path, Path, Dict[str, object]]:
    """Write ``target/config.toml`` and ``target/schema.pbtxt``; returns their paths and the
    proposal."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_data_validation as tfdv

    from cartola.schema import curate
    target, data_dir = target.expanduser().resolve(), data_dir.expanduser().resolve()
    config_path, schema_path = target / "config.toml", target / "schema.pbtxt"
    existing = [str(p) for p in (config_path, schema_path) if p.exists()]
    if existing and not force:
        raise InputDataError(f"{existing[0]} exists; pass --force to replace it")
    # Span folders (the default span_pattern): propose from the latest snapshot.
    source = latest_folder(data_dir, Config().span_pattern)
    files = sorted(source.glob("*.csv")) if source.is_dir() else []
    if not files:
        checks.check_input_dir(source)  # raises the folder's problem
    delimiter, decimal = sniff_dialect(files[0])
    statistics = _statistics(source, delimiter, decimal)
    proposal = propose(statistics, label, id_column)
    schema = tfdv.infer_schema(statistics, infer_feature_shape=True)
    curate(schema, statistics, label)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", target.name).strip("_").lower() or "tabular"
    target.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(schema_path))
    config_path.write_text(config_text(target, data_dir, name, proposal, delimiter, decimal),
                           encoding="utf-8")
    return config_path, schema_path, proposal
