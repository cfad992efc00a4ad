"""Which model version is served: the highest, unless a rollback or promotion pinned one.

``serving_model/<name>/served.json`` holds the pinned version (written atomically: one
``os.replace``); ``served_log.jsonl`` beside it records every change with who, when and why;
``serving_model/<name>.tfserving.config`` is the matching TF Serving model config file
(``model_version_policy { specific { versions: N } }``). No version folder is ever deleted.

Light on purpose (no TensorFlow): the server's watcher reads the pin on every poll.
"""
from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Optional

from cartola.published.versions import model_versions

SERVED_FILE = "served.json"
LOG_FILE = "served_log.jsonl"
# Files a TF Serving SavedModel folder must hold to be loadable.
SAVED_MODEL_FILES = ("saved_model.pb", "variables")


class ServedVersionError(ValueError):
    """A rollback or promotion that cannot be done, or an unreadable pin file."""


def tf_serving_config_path(base: Path) -> Path:
    """The TF Serving model config file of the model folder ``base``."""
    base = Path(base)
    return base.parent / f"{base.name}.tfserving.config"


def pinned_version(base: Path) -> Optional[int]:
    """The version ``served.json`` pins (None: no pin, the highest version is served)."""
    path = Path(base) / SERVED_FILE
    if not path.is_file():
        return None
    try:
        version = json.loads(path.read_text(encoding="utf-8"))["version"]
    except (ValueError, KeyError, TypeError) as err:
        raise ServedVersionError(f"{path}: not a served-version file ({err}); "
                                 "fix it with `cartola rollback --to N`") from err
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ServedVersionError(f"{path}: version must be a positive integer, got {version!r}")
    return version


def served_version(base: Path) -> Optional[int]:
    """The version that is served: the pinned one, or the highest (None: no version)."""
    pinned = pinned_version(base)
    if pinned is not None:
        return pinned
    versions = model_versions(base)
    return versions[-1] if versions else None


def check_version_folder(base: Path, version: int) -> Path:
    """The folder of ``version``; raises when it is missing or not a SavedModel."""
    folder = Path(base) / str(version)
    versions = model_versions(base)
    if version not in versions:
        raise ServedVersionError(f"version {version} does not exist under {base} "
                                 f"(versions: {versions or 'none'})")
    missing = [name for name in SAVED_MODEL_FILES if not (folder / name).exists()]
    if missing:
        raise ServedVersionError(f"{folder}: not a SavedModel (missing {', '.join(missing)}); "
                                 "refusing to serve it")
    return folder


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_tf_serving_config(base: Path, version: int) -> Path:
    """TF Serving's model config for ``base``, serving exactly ``version``."""
    base = Path(base).resolve()
    text = ("model_config_list {\n  config {\n"
            f"    name: {json.dumps(base.name)}\n"
            f"    base_path: {json.dumps(str(base))}\n"
            "    model_platform: \"tensorflow\"\n"
            f"    model_version_policy {{ specific {{ versions: {version} }} }}\n"
            "  }\n}\n")
    path = tf_serving_config_path(base)
    _write_atomic(path, text)
    return path


def set_served(base: Path, version: int, action: str, reason: str,
               by: Optional[str] = None) -> dict:
    """Pin ``version`` as the served one and record the change; returns the log entry."""
    base = Path(base)
    check_version_folder(base, version)
    try:
        previous = served_version(base)
    except ServedVersionError:  # an unreadable pin is what this call replaces
        previous = None
    entry = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "by": by or f"{getpass.getuser()}@{socket.gethostname()}",
             "action": action, "from": previous, "to": version, "reason": reason}
    _write_atomic(base / SERVED_FILE, json.dumps({"version": version, **entry}, indent=2) + "\n")
    with open(base / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
    write_tf_serving_config(base, version)
    return entry


def rollback(base: Path, to: Optional[int], reason: str, by: Optional[str] = None) -> dict:
    """Serve ``to`` (default: the highest version below the served one)."""
    base = Path(base)
    try:
        current = served_version(base)
    except ServedVersionError:
        if to is None:  # "the one before" needs a readable pin
            raise
        current = None
    if current is None and to is None:
        raise ServedVersionError(f"no model version under {base}: nothing to roll back")
    if to is None:
        earlier = [v for v in model_versions(base) if v < current]
        if not earlier:
            raise ServedVersionError(f"version {current} is the earliest under {base}: "
                                     "nothing to roll back to")
        to = earlier[-1]
    if to == current:
        raise ServedVersionError(f"version {to} is already served")
    return set_served(base, to, "rollback", reason, by)


def after_push(base: Path, version: int) -> None:
    """A newly pushed version becomes the served one: move the pin (if any) and the TF
    Serving config to it."""
    base = Path(base)
    if (base / SERVED_FILE).is_file():
        set_served(base, version, "push", "pushed by the pipeline", by="pipeline")
    else:
        write_tf_serving_config(base, version)


def served_log(base: Path) -> list:
    """Every recorded change of the served version, oldest first."""
    path = Path(base) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
