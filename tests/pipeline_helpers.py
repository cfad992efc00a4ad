"""Helpers that tests in several folders share: read pipeline outputs back, fingerprint
folders, write sample data, fake a SavedModel or TFMA's confusion matrices."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import SAMPLE_CSV


def tree_digest(path: Path) -> str:
    """sha256 over every file's relative path and bytes under ``path`` ('' if absent)."""
    digest = hashlib.sha256()
    if path.exists():
        for item in sorted(path.rglob("*")):
            digest.update(str(item.relative_to(path)).encode())
            if item.is_file():
                digest.update(item.read_bytes())
    return digest.hexdigest()


def first_output(config, node: str, key: str) -> Path:
    """Output folder of a node's first execution (the session fixture's run)."""
    runs = (config.pipeline_dir / node / key).iterdir()
    return sorted(runs, key=lambda p: int(p.name))[0]


def examples_frame(split_dir: Path) -> pd.DataFrame:
    """tf.Examples written by CsvExampleGen (gzipped TFRecords) as a DataFrame."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rows = []
    files = sorted(str(p) for p in split_dir.glob("*.gz"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            row[name] = values[0] if values else None
            if isinstance(row[name], bytes):
                row[name] = row[name].decode()
        rows.append(row)
    return pd.DataFrame(rows)


def executions_by_state(config):
    """{node id: [state names]} of every execution in ML Metadata, in order."""
    # pylint: disable=import-outside-toplevel
    from ml_metadata.proto import metadata_store_pb2

    from cartola.metadata import open_metadata_store
    store = open_metadata_store(config)
    result = {}
    for execution in store.get_executions():
        node = next(c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(
            execution.id) if c.type == "node")
        result.setdefault(node, []).append(
            metadata_store_pb2.Execution.State.Name(execution.last_known_state))
    return result


def read_sample(**kwargs) -> pd.DataFrame:
    """The sample CSV as text, so it is written back unchanged: a float round trip would turn
    the integer columns with gaps into "3.0", which the schema (INT) rightly flags."""
    return pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False, **kwargs)


def write_csv(frame: pd.DataFrame, folder: Path) -> str:
    """``frame`` as ``folder``/data.csv; the folder, as the input a run reads."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "data.csv", index=False)
    return str(folder)


def fake_saved_model(path: Path, fingerprint: bytes = b"fp-1") -> Path:
    """The files a Pusher copies, with a chosen fingerprint (what tells versions apart)."""
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "variables" / "variables.index").write_bytes(b"index")
    (path / "fingerprint.pb").write_bytes(fingerprint)
    return path


class FakeMatrices:
    """The fields TFMA's binary_confusion_matrices.Matrices carries, counted with numpy."""

    def __init__(self, scores, labels, thresholds):
        self.tp, self.fn, self.fp, self.tn = [], [], [], []
        for threshold in thresholds:
            predicted = scores > threshold
            self.tp.append(float(np.sum(predicted & (labels == 1))))
            self.fn.append(float(np.sum(~predicted & (labels == 1))))
            self.fp.append(float(np.sum(predicted & (labels == 0))))
            self.tn.append(float(np.sum(~predicted & (labels == 0))))
