"""What a trained SavedModel is and needs to load: its family, the candidates it was chosen
from, and the Python modules that register its ops (TF-DF's for trees).

The Trainer writes ``assets.extra/cartola_model.json`` beside ``saved_model.pb``;
``assets.extra`` is TF Serving's folder for files TensorFlow does not load, and the Pusher
copies it with the model, so a served version carries its own record. Loaders call
:func:`load_ops` first: a linear model pays for no TF-DF import, a tree model gets its ops.
This module imports neither TensorFlow nor TF-DF at import time.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

INFO_FILE = Path("assets.extra") / "cartola_model.json"
# Module each family needs imported before its SavedModel loads (its ops' registration).
OPS_MODULES = {"gbt": ["tensorflow_decision_forests"]}


def write_info(model_dir: str, family: str, candidates: List[Dict[str, Any]],
               **extra: Any) -> Path:
    """Record the exported family, the candidates' eval figures and the ops it needs."""
    path = Path(model_dir) / INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"family": family, "ops_modules": OPS_MODULES.get(family, []),
            "candidates": candidates, **extra}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_info(model_dir) -> Optional[Dict[str, Any]]:
    """The record of a SavedModel directory, or None (a model from before it existed, or
    not a directory this project wrote)."""
    try:
        return json.loads((Path(model_dir) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_ops(model_dir) -> List[str]:
    """Import the modules the SavedModel's ops need; returns their names. Without a record,
    a model whose assets hold a TF-DF forest (its ``*header.pb``) gets TF-DF's ops too."""
    info = read_info(model_dir)
    if info is not None:
        modules = list(info.get("ops_modules", []))
    else:  # TF-DF names a forest's files <prefix>header.pb
        modules = OPS_MODULES["gbt"] if any((Path(model_dir) / "assets").glob("*header.pb")) else []
    for module in modules:
        importlib.import_module(module)
    return modules


def label_of(info: Optional[Dict[str, Any]]) -> Optional[Dict[str, str]]:
    """What the model's score is the probability of: ``{"label": column, "positive_label":
    value}`` ("1" for a label exported as 0/1), or None for a model without that record."""
    if not info or not info.get("label"):
        return None
    return {"label": info["label"], "positive_label": info.get("positive_label") or "1"}


def describe(info: Optional[Dict[str, Any]]) -> str:
    """One line: the family and, when several were tried, each one's eval AUC / log loss."""
    if not info:
        return "-"
    tried = info.get("candidates") or []
    if len(tried) <= 1:
        return str(info.get("family", "-"))
    parts = [f"{c['family']} {c['auc']:.3f}/{c['log_loss']:.3f}" for c in tried]
    return f"{info['family']} (auto; eval AUC/log loss: {', '.join(parts)})"
