"""What each column of a new data set is, read from its values: a feature, a key, a code, a
time, or a leak of the label (``cartola init``'s proposal).

TFDV's statistics give types and counts but no distinct count for numbers, and nothing about
how a column relates to the label; this reads (a sample of) the rows with pandas instead.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np
import pandas as pd

# A column that alone ranks the label this well is almost surely computed from it, or
# recorded after it (a tip amount beside "tipped", a churn date beside "churned").
LEAK_AUC = 0.98
# Integer columns with at least this many distinct values and a code-like name are codes
# (areas, tracts, zip codes): numbers without order.
MIN_CODE_VALUES = 10
CODE_NAME = re.compile(r"(^|_)(code|cod|cd|zip|cep|postal|area|tract|fips|geo|region|district|"
                       r"county|community|municip\w*|bairro|state|uf|ward|precinct|"
                       r"block)($|_)|[a-z](Code|Zip|Area|Tract)$", re.IGNORECASE)
TIME_NAME = re.compile(r"(^|_)(time|date|datetime|timestamp|epoch|ts|dt)($|_)|_at$|"
                       r"[a-z](Time|Date|Timestamp)$", re.IGNORECASE)
KEY_NAME = re.compile(r"(^|_)(id|key|uuid|guid|number|nr|no)($|_)|[a-z]Id$", re.IGNORECASE)
# Epoch seconds from 1973 on: an integer this large in every row is a time or a key.
EPOCH_SECONDS = 1e8


def single_column_auc(values: pd.Series, label: np.ndarray) -> Optional[float]:
    """How well one column alone ranks the 0/1 label: the AUC of its values (numbers) or of
    its out-of-fold positive share per value (text), folded so that 0.5 is no signal and 1 a
    perfect ranking either way; None when it cannot be measured."""
    positives = int(label.sum())
    if positives == 0 or positives == len(label):
        return None
    if pd.api.types.is_numeric_dtype(values):
        # A missing value ranks below every other: missingness can leak the label too.
        score = values.astype(float).fillna(values.min() - 1 if values.notna().any() else 0)
    else:
        score = _out_of_fold_share(values.fillna("").astype(str), label)
    ranks = score.rank().to_numpy()
    auc = (ranks[label == 1].sum() - positives * (positives + 1) / 2) / (
        positives * (len(label) - positives))
    return float(max(auc, 1.0 - auc))


def _out_of_fold_share(values: pd.Series, label: np.ndarray) -> pd.Series:
    """Each row's value's positive share over the other half of the rows (two folds), so a
    value seen once carries no signal about its own row."""
    fold = np.arange(len(values)) % 2
    prior = float(label.mean())
    result = np.full(len(values), prior)
    for part in (0, 1):
        other = fold != part
        shares = pd.Series(label[other]).groupby(values[other].to_numpy()).mean()
        mapped = values[fold == part].map(shares)
        result[fold == part] = mapped.fillna(prior).to_numpy()
    return pd.Series(result, index=values.index)


def integer_role(name: str, values: pd.Series) -> Optional[str]:
    """Why an integer column is not a quantity (a key, a time or a code), or None."""
    present = values.dropna()
    if present.empty:
        return None
    distinct = int(present.nunique())
    unique = distinct == len(values) and len(values) >= 20
    if TIME_NAME.search(name) and distinct > MIN_CODE_VALUES:
        return f"an integer time ({distinct:,} distinct values); spans carry time"
    if unique and (KEY_NAME.search(name) or present.is_monotonic_increasing
                   or present.min() >= EPOCH_SECONDS):
        return "unique per row: an id, a key or a timestamp"
    if CODE_NAME.search(name) and distinct >= MIN_CODE_VALUES:
        return f"an integer code ({distinct:,} distinct values): categories, not a quantity"
    return None


def text_role(name: str, values: pd.Series) -> Optional[str]:
    """Why a text column is no feature (a time written as text), or None."""
    present = values.dropna().astype(str)
    if present.empty or not TIME_NAME.search(name):
        return None
    parsed = pd.to_datetime(present.head(200), errors="coerce")
    if parsed.notna().mean() > 0.9:
        return "a date or time written as text; spans carry time"
    return None


def leaks(frame: pd.DataFrame, label: np.ndarray, columns) -> Dict[str, float]:
    """{column: single-column AUC} of ``columns`` that rank the label at LEAK_AUC or better."""
    found = {}
    for name in columns:
        auc = single_column_auc(frame[name], label)
        if auc is not None and auc >= LEAK_AUC:
            found[name] = auc
    return found
