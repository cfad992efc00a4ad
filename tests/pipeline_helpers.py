"""Helpers for end-to-end tests: read pipeline outputs back, fingerprint folders."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd


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
