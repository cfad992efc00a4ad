"""Feature specification shared by Transform, Trainer and serving.

The spec travels as a plain dict in the components' ``custom_config`` so that it is part of
the compiled pipeline: changing a feature list (or this package's code, see ``code_version``)
changes the Transform and Trainer cache keys.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List

TRANSFORMED_SUFFIX = "_xf"
LABEL_KEY = "label"  # key of the transformed label


def transformed_name(name: str) -> str:
    """Name of a feature after Transform."""
    return name + TRANSFORMED_SUFFIX


def code_version() -> str:
    """Hash of the model code, so editing it invalidates cached Transform/Trainer outputs."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def feature_spec(config) -> Dict[str, Any]:
    """The JSON-serialisable subset of the config the model code needs."""
    return {
        "label": config.label,
        "positive_label": config.positive_label,
        "numeric": list(config.numeric_features),
        "log": list(config.log_features),
        "clip": list(config.clip_features),
        "clip_max": float(config.clip_max),
        "categorical": list(config.categorical_features),
        "oov_buckets": int(config.oov_buckets),
        "model_family": config.model_family,
        "hidden_units": list(config.hidden_units),
        "gbt_num_trees": int(config.gbt_num_trees),
        "gbt_max_rows": int(config.gbt_max_rows),
        "keep_candidates": bool(config.keep_candidates),
        "learning_rate": float(config.learning_rate),
        "batch_size": int(config.batch_size),
        "max_epochs": int(config.max_epochs),
        "patience": int(config.early_stopping_patience),
        "log_every": int(config.epoch_log_every),
        "threads": int(config.trainer_threads),
        "cache_mb": float(config.trainer_cache_mb),
        "seed": int(config.seed),
        "code_version": code_version(),
    }


# What only the Trainer reads: changing it must not re-run Transform.
TRAINER_ONLY = ("model_family", "hidden_units", "gbt_num_trees", "gbt_max_rows",
                "keep_candidates", "learning_rate", "batch_size", "max_epochs", "patience",
                "log_every", "threads", "cache_mb")


def transform_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The part of :func:`feature_spec` Transform needs (its cache key)."""
    return {key: value for key, value in spec.items() if key not in TRAINER_ONLY}


def raw_features(spec: Dict[str, Any]) -> List[str]:
    """Raw feature names the model reads, numeric first."""
    return list(spec["numeric"]) + list(spec["categorical"])
