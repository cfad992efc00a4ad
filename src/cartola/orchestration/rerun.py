"""Whether a run would change nothing: the same data, config, code and served model as the
last finished run, known before TensorFlow is imported.

TFX's cache already skips every component whose inputs are unchanged, but a second run
still pays for importing TFX (about half a minute) and re-runs the Evaluator, whose
baseline is now the model the first run pushed. When nothing that feeds the pipeline has
changed, the outcome cannot change either, so ``cartola run`` says so and stops.

The data's part of the key is each file's path, size and modification time, as TFX's own
input fingerprint is; a database source (whose rows can change under the same name) and
``enable_cache = false`` always run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Optional

from cartola.config import Config
from cartola.data.spans import Span
from cartola.published.served import ServedVersionError, pinned_version, served_version
from cartola.published.versions import model_versions

RECORD = "last_run.json"
# Libraries whose upgrade can change a result with the same project code.
LIBRARIES = ("tfx", "tensorflow", "tensorflow-transform", "tensorflow-model-analysis",
             "tensorflow-data-validation", "tf-keras", "apache-beam")
CODE = Path(__file__).resolve().parents[2]  # src/: the cartola package and tfx_utils.py


def _hash_tree(digest, folder: Path, pattern: str, contents: bool) -> None:
    for path in sorted(folder.rglob(pattern)):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(folder)).encode())
        if contents:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            stat = path.stat()
            digest.update(f":{stat.st_size}:{stat.st_mtime_ns}\n".encode())


def _libraries() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return ",".join(found)


def fingerprint(config: Config, span: Span, data_dir: Path) -> str:
    """A key of everything a run reads: config, curated schema, data files, code, libraries."""
    digest = hashlib.sha256()
    settings = dataclasses.asdict(config)
    digest.update(repr(sorted(settings.items())).encode())
    digest.update(f"span:{span.number}:{span.folder}".encode())
    schema = config.path(config.schema_path)
    digest.update(schema.read_bytes() if schema.is_file() else b"no schema")
    if data_dir.is_dir():
        _hash_tree(digest, data_dir, "*", contents=False)
    _hash_tree(digest, CODE, "*.py", contents=True)
    digest.update(_libraries().encode())
    return digest.hexdigest()


def _serving(config: Config) -> dict:
    base = config.model_serving_dir
    try:
        return {"versions": model_versions(base), "pinned": pinned_version(base),
                "served": served_version(base)}
    except ServedVersionError:
        return {"versions": None}


def _metadata_present(config: Config) -> bool:
    sqlite = config.sqlite_metadata_path()
    return sqlite is None or sqlite.is_file()


def applies(config: Config) -> bool:
    """Only file sources with caching on can be known unchanged without running."""
    return config.enable_cache and config.source != "postgresql"


def unchanged(config: Config, key: str) -> Optional[dict]:
    """The last run's record when ``key`` and the serving folder are as that run left them
    (then this run would change nothing), else None."""
    path = config.pipeline_dir / RECORD
    if not applies(config) or not path.is_file() or not _metadata_present(config):
        return None
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if last.get("key") != key or last.get("serving") != _serving(config):
        return None
    return last


def record(config: Config, key: str, span: Span) -> None:
    """Remember a finished run's key and the serving folder it left."""
    if not applies(config):
        return
    path = config.pipeline_dir / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "span": span.name, "location": span.location,
                               "serving": _serving(config)}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def forget(config: Config) -> None:
    """Drop the record (a run that stopped or failed must run again next time)."""
    (config.pipeline_dir / RECORD).unlink(missing_ok=True)
