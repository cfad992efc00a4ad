"""Cartola PRO propensity baseline: VIF selection, logistic regression, KS.

The data scientist's study, refactored; the TFX model is held against it. It reads the users'
CSV, transforms the long-tailed and malformed columns, removes collinear features by iterative
VIF elimination, fits imputer + scaler + logistic regression on a fixed, stratified 70/30
split, prunes features by |coefficient| while KS holds, and reports precision, recall and KS on
the test split::

    python src/refactored_code.py [--data CSV] [--target COLUMN] [--vif-threshold 3] [--out DIR]

Importing this module has no side effects; matplotlib is imported only to draw the figures.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.outliers_influence import variance_inflation_factor

from cartola.config import ConfigError, load_config
from cartola.data.spans import latest_folder

TARGET = "pro_target"
# Counts and durations with long right tails: modelled as log1p(value).
LOG_COLUMNS = ("anos_desde_criacao", "tempo_desperd", "interacoes", "interacoes_g1",
               "iteracao_volei", "iteracao_atletismo", "instagram_num", "facebook_num")
# Averages whose values above 1 the study capped: clipped at CLIP_MAX and renamed ceil_*.
CLIP_COLUMNS = ("avg_3", "avg_4")
CLIP_MAX = 1.0
PIXELS_COLUMN = "pixels"
TOTAL_PIXELS = "total_pixels"
FINAL_FEATURES = ["anos_como_pro", "ceil_avg_3", "ceil_avg_4", "escalacoes", "norm_escalacao",
                  "log_tempo_desperd"]

VIF_THRESHOLD = 3.0
# Largest KS loss (training rows) pruning accepts per dropped feature: dropping a feature
# without signal moves KS by about 0.001 on the sample, dropping a study feature by 0.01 or more.
KS_TOLERANCE = 0.005
TEST_SIZE = 0.3
RANDOM_STATE = 42
DECISION_THRESHOLD = 0.5
DATA_FILE = "cartola_sample.csv"
PLOT_FILES = ("baseline_score_distributions.png", "baseline_roc.png", "baseline_pr.png",
              "baseline_feature_importance.png")


class BaselineInputError(ValueError):
    """The input cannot be used by the baseline; the message names the file, column or value."""


# --- Transforms ---------------------------------------------------------------------------

def log1p_nonnegative(values: pd.Series) -> pd.Series:
    """log1p of each value; a missing, non-numeric or negative value becomes NaN on its own."""
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    return np.log1p(numeric.where(numeric >= 0))


def total_pixels(values: pd.Series) -> pd.Series:
    """Screen resolution 'WIDTHxHEIGHT' to WIDTH * HEIGHT; malformed or zero-sized → NaN."""
    parts = values.astype("string").str.extract(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
    total = pd.to_numeric(parts[0]) * pd.to_numeric(parts[1])
    return total.where(total > 0).astype(float)


def clip_at(values: pd.Series, upper: float = CLIP_MAX) -> pd.Series:
    """Numeric values capped at ``upper``; non-numeric values become NaN."""
    return pd.to_numeric(values, errors="coerce").astype(float).clip(upper=upper)


def engineer_features(df: pd.DataFrame) -> pd.DataFrame:
    """The baseline's transforms, as a new frame with each raw column replaced in place.

    ``x`` in LOG_COLUMNS becomes ``log_x``, ``avg_3``/``avg_4`` become ``ceil_avg_3``/
    ``ceil_avg_4`` and ``pixels`` becomes ``total_pixels``; other columns (id, label) are kept
    as they are.
    """
    columns = {}
    for name in df.columns:
        if name in LOG_COLUMNS:
            columns[f"log_{name}"] = log1p_nonnegative(df[name])
        elif name in CLIP_COLUMNS:
            columns[f"ceil_{name}"] = clip_at(df[name])
        elif name == PIXELS_COLUMN:
            columns[TOTAL_PIXELS] = total_pixels(df[name])
        else:
            columns[name] = df[name]
    return pd.DataFrame(columns, index=df.index)


# --- Collinearity -------------------------------------------------------------------------

def vif_table(frame: pd.DataFrame) -> pd.Series:
    """VIF of each column (statsmodels, with an intercept); missing values take the median."""
    filled = frame.astype(float).fillna(frame.median(numeric_only=True))
    exog = np.column_stack([np.ones(len(filled)), filled.to_numpy()])
    # Near-singular designs are what this looks for; the huge VIF says so, the warnings add
    # nothing.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        values = np.array([variance_inflation_factor(exog, i + 1)
                           for i in range(filled.shape[1])])
    # A perfectly collinear column has R^2 = 1: count it as infinitely inflated.
    return pd.Series(np.where(np.isnan(values), np.inf, values), index=frame.columns)


def eliminate_collinear(frame: pd.DataFrame,
                        threshold: float = VIF_THRESHOLD) -> Tuple[List[str], List[str]]:
    """Drop the column with the highest VIF until every VIF is <= ``threshold``.

    Returns (kept, removed), removed in the order of elimination.
    """
    kept, removed = list(frame.columns), []
    while len(kept) > 1:
        vifs = vif_table(frame[kept])
        worst = vifs.idxmax()
        if vifs[worst] <= threshold:
            break
        kept.remove(worst)
        removed.append(worst)
    return kept, removed


# --- Model --------------------------------------------------------------------------------

def ks_statistic(scores: Iterable[float], labels: Iterable[int]) -> float:
    """Kolmogorov-Smirnov distance between the scores of the positive and negative class."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    positive, negative = scores[labels == 1], scores[labels == 0]
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("KS needs scores of both classes")
    # Only the statistic is used; the asymptotic method skips the slow exact p-value.
    return float(stats.ks_2samp(positive, negative, method="asymp").statistic)


def fit_logistic(train: pd.DataFrame, test: pd.DataFrame, features: List[str],
                 target: str = TARGET, random_state: int = RANDOM_STATE) -> Dict:
    """Fit median imputer + standard scaler + logistic regression on ``train``; score ``test``.

    Coefficients are on the standardised scale, so their sizes are comparable.
    """
    classifier = LogisticRegression(max_iter=1000, random_state=random_state)
    # keep_empty_features: an all-missing column stays (as zeros), so coefficients stay aligned
    # with ``features``.
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                          StandardScaler(), classifier)
    model.fit(train[features].astype(float), train[target].astype(int))
    labels = test[target].astype(int).to_numpy()
    scores = model.predict_proba(test[features].astype(float))[:, 1]
    predicted = (scores >= DECISION_THRESHOLD).astype(int)
    return {
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "ks": ks_statistic(scores, labels),
        "auc": float(roc_auc_score(labels, scores)),
        "mean_score_pos": float(scores[labels == 1].mean()),
        "mean_score_neg": float(scores[labels == 0].mean()),
        "scores": scores,
        "labels": labels,
        "coefficients": dict(zip(features, classifier.coef_[0].astype(float))),
        "model": model,
    }


def prune_by_coefficient(train: pd.DataFrame, features: List[str], target: str = TARGET,
                         tolerance: float = KS_TOLERANCE,
                         random_state: int = RANDOM_STATE) -> Tuple[List[str], List[str]]:
    """Drop the feature with the smallest |coefficient| while KS drops by at most ``tolerance``.

    KS is measured on the training rows, so the test split stays unseen until the final report.
    Returns (kept, pruned), pruned in the order of removal.
    """
    kept, pruned = list(features), []
    current = fit_logistic(train, train, kept, target, random_state)
    while len(kept) > 1:
        weakest = min(kept, key=lambda name: abs(current["coefficients"][name]))
        candidate = [name for name in kept if name != weakest]
        trial = fit_logistic(train, train, candidate, target, random_state)
        if current["ks"] - trial["ks"] > tolerance:
            break
        kept, current = candidate, trial
        pruned.append(weakest)
    return kept, pruned


# --- Input --------------------------------------------------------------------------------

def load_data(path: Path, target: str = TARGET) -> pd.DataFrame:
    """Read the CSV and check the label; raise BaselineInputError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise BaselineInputError(f"data file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as err:
        raise BaselineInputError(f"data file is empty: {path}") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise BaselineInputError(f"cannot parse {path} as CSV: {err}".splitlines()[0]) from err
    if frame.empty:
        raise BaselineInputError(f"data file has a header but no rows: {path}")
    if target not in frame.columns:
        raise BaselineInputError(f"label column {target!r} not found in {path}")
    labels = frame[target]
    if labels.isna().any():
        raise BaselineInputError(
            f"label column {target!r} in {path} has {int(labels.isna().sum())} missing values")
    numeric = pd.to_numeric(labels, errors="coerce")
    bad = labels[~numeric.isin([0, 1])].astype(str).unique()
    if len(bad):
        raise BaselineInputError(f"label column {target!r} in {path} is not binary 0/1: "
                                 f"found {', '.join(map(repr, bad[:5]))}")
    if numeric.nunique() < 2:
        raise BaselineInputError(f"label column {target!r} in {path} has only the value "
                                 f"{int(numeric.iloc[0])}; need both 0 and 1")
    frame[target] = numeric.astype(int)
    return frame


def candidate_features(frame: pd.DataFrame, exclude: Sequence[str]) -> List[str]:
    """Numeric columns, other than ``exclude``, that vary at least once."""
    return [name for name in frame.columns
            if name not in exclude and pd.api.types.is_numeric_dtype(frame[name])
            and frame[name].nunique(dropna=True) > 1]


# --- Whole run ----------------------------------------------------------------------------

def prepare(data_path: Path, target: str = TARGET) -> Tuple[pd.DataFrame, pd.DataFrame, List[str]]:
    """Load, transform and split the data: (train, test, candidate features)."""
    raw = load_data(data_path, target)
    # The label is set aside so no transform can rename it (e.g. --target tempo_desperd).
    frame = engineer_features(raw.drop(columns=[target])).replace([np.inf, -np.inf], np.nan)
    frame[target] = raw[target]
    features = candidate_features(frame, exclude=(target, load_config().id_column))
    if not features:
        raise BaselineInputError(
            f"no usable feature in {data_path}: no numeric column besides the id and "
            f"{target!r} has two or more distinct values")
    try:
        train, test = train_test_split(frame, test_size=TEST_SIZE, random_state=RANDOM_STATE,
                                       stratify=frame[target])
    except ValueError as err:
        raise BaselineInputError(f"too few rows in {data_path} to split: {err}") from err
    return train, test, features


def run_baseline(data_path: Path, target: str = TARGET, vif_threshold: float = VIF_THRESHOLD,
                 out_dir: Optional[Path] = None, ks_tolerance: float = KS_TOLERANCE) -> Dict:
    """The whole study: transforms, VIF elimination, fit, pruning, final fit on the test split.

    Writes the figures to ``out_dir`` when given (None: no files; the CLI passes assets/).
    Returns the final model's metrics (as :func:`fit_logistic`) plus ``removed`` (collinear),
    ``pruned``, ``vif_features``, ``final_features``, ``all_vif_metrics`` (before pruning),
    ``rows``, ``positives`` and ``data_path``. Unusable input raises BaselineInputError.
    """
    if np.isnan(vif_threshold) or vif_threshold <= 1:
        raise BaselineInputError(f"VIF threshold must be above 1, got {vif_threshold}")
    data_path = Path(data_path)
    train, test, features = prepare(data_path, target)
    kept, removed = eliminate_collinear(train[features], vif_threshold)
    before = fit_logistic(train, test, kept, target)
    final, pruned = prune_by_coefficient(train, kept, target, ks_tolerance)
    result = fit_logistic(train, test, final, target)
    result.update(removed=removed, pruned=pruned, vif_features=kept, final_features=final,
                  all_vif_metrics={key: before[key] for key in ("precision", "recall", "ks",
                                                                 "auc")},
                  rows=len(train) + len(test),
                  positives=int(train[target].sum() + test[target].sum()), data_path=data_path)
    if out_dir is not None:
        result["plots"] = save_plots(result, Path(out_dir))
    return result


def save_plots(result: Dict, out_dir: Path) -> List[Path]:
    """Draw the test split's score distributions (KS), ROC, PR and coefficient figures."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")  # headless: CI and Airflow workers have no display
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw, size in ((PLOT_FILES[0], _plot_scores, (11, 4.2)),
                             (PLOT_FILES[1], _plot_roc, (5.5, 5)),
                             (PLOT_FILES[2], _plot_pr, (5.5, 5)),
                             (PLOT_FILES[3], _plot_importance,
                              (6.5, 0.45 * len(result["coefficients"]) + 1.5))):
        fig = plt.figure(figsize=size)
        try:
            draw(fig, result)
            fig.tight_layout()
            fig.savefig(out_dir / name, dpi=110)
        finally:
            plt.close(fig)
        paths.append(out_dir / name)
    return paths


def _plot_scores(fig, result: Dict) -> None:
    """Histograms of both classes' scores, and their CDFs with the KS gap marked."""
    scores, labels = result["scores"], result["labels"]
    pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    hist, cdf = fig.subplots(1, 2)
    bins = np.linspace(0, 1, 41)
    hist.hist(neg, bins=bins, alpha=0.6, density=True, color="tab:blue",
              label=f"non-PRO (mean {neg.mean():.2f})")
    hist.hist(pos, bins=bins, alpha=0.6, density=True, color="tab:orange",
              label=f"PRO (mean {pos.mean():.2f})")
    hist.set(xlabel="predicted PRO probability", ylabel="density", title="Score distributions")
    hist.legend()
    grid = np.linspace(0, 1, 1001)
    cdf_pos = np.searchsorted(pos, grid, side="right") / len(pos)
    cdf_neg = np.searchsorted(neg, grid, side="right") / len(neg)
    at = int(np.argmax(cdf_neg - cdf_pos))
    cdf.plot(grid, cdf_neg, color="tab:blue", label="non-PRO")
    cdf.plot(grid, cdf_pos, color="tab:orange", label="PRO")
    cdf.vlines(grid[at], cdf_pos[at], cdf_neg[at], color="black", linestyles="--",
               label=f"KS = {result['ks']:.3f}")
    cdf.set(xlabel="predicted PRO probability", ylabel="cumulative share",
            title="Cumulative distributions (KS)")
    cdf.legend(loc="lower right")


def _plot_roc(fig, result: Dict) -> None:
    from sklearn.metrics import roc_curve  # pylint: disable=import-outside-toplevel
    axis = fig.subplots()
    fpr, tpr, _ = roc_curve(result["labels"], result["scores"])
    axis.plot(fpr, tpr, label=f"logistic regression (AUC {result['auc']:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    axis.legend(loc="lower right")


def _plot_pr(fig, result: Dict) -> None:
    from sklearn.metrics import precision_recall_curve  # pylint: disable=import-outside-toplevel
    axis = fig.subplots()
    precision, recall, _ = precision_recall_curve(result["labels"], result["scores"])
    axis.plot(recall, precision, label="logistic regression")
    axis.axhline(result["labels"].mean(), color="grey", linestyle=":",
                 label="PRO share (random model)")
    axis.scatter([result["recall"]], [result["precision"]], color="black", zorder=3,
                 label=f"threshold {DECISION_THRESHOLD}: P {result['precision']:.2f}, "
                       f"R {result['recall']:.2f}")
    axis.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)",
             xlim=(0, 1), ylim=(0, 1.02))
    axis.legend(loc="lower left")


def _plot_importance(fig, result: Dict) -> None:
    """Coefficients on standardised features: comparable sizes, sign shows the direction."""
    coefficients = pd.Series(result["coefficients"]).sort_values(key=np.abs)
    axis = fig.subplots()
    axis.barh(coefficients.index, coefficients.to_numpy(),
              color=np.where(coefficients.to_numpy() >= 0, "tab:orange", "tab:blue"))
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set(xlabel="coefficient (standardised feature)",
             title="Feature importance, final model")


def format_report(result: Dict) -> str:
    """The lines the command prints."""
    share = result["positives"] / result["rows"]
    return "\n".join([
        f"data: {result['data_path']} ({result['rows']} rows, {share:.1%} PRO)",
        f"removed collinear features (VIF): {', '.join(result['removed']) or 'none'}",
        f"pruned by |coefficient|: {', '.join(result['pruned']) or 'none'}",
        f"final features: {', '.join(result['final_features'])}",
        f"precision: {result['precision']:.3f}",
        f"recall: {result['recall']:.3f}",
        f"KS: {result['ks']:.3f}",
        f"AUC: {result['auc']:.3f}",
        f"mean PRO probability: PRO users {result['mean_score_pos']:.3f}, "
        f"others {result['mean_score_neg']:.3f}",
        "before pruning: " + ", ".join(f"{key} {value:.3f}"
                                       for key, value in result["all_vif_metrics"].items()),
    ] + [f"figure: {path}" for path in result.get("plots", [])])


def main(argv: Optional[List[str]] = None) -> int:
    """Command line; returns the exit code (2 for unusable input)."""
    try:
        config = load_config()
    except ConfigError as err:
        print(f"refactored_code: {err}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--data", type=Path,
                        default=latest_folder(config.data_dir, config.span_pattern) / DATA_FILE,
                        help="users' CSV (default: %(default)s)")
    parser.add_argument("--target", default=config.label,
                        help="0/1 label column (default: %(default)s)")
    parser.add_argument("--vif-threshold", type=float, default=VIF_THRESHOLD,
                        help="drop features while the highest VIF is above this "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=config.project_home / "assets",
                        help="folder for the figures (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        result = run_baseline(args.data, args.target, args.vif_threshold, args.out)
    except (BaselineInputError, ConfigError) as err:
        print(f"refactored_code: {err}", file=sys.stderr)
        return 2
    print(format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
