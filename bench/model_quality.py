"""Model quality on tables the project was not built on: AUC and log loss on held-out rows,
per model family and for ``auto``, beside scikit-learn's LogisticRegression and
HistGradientBoostingClassifier trained on the same rows.

usage: python bench/model_quality.py DATASETS_DIR [--work DIR] [--only NAME ...]

DATASETS_DIR is what ``python shared/datasets/fetch.py DATASETS_DIR`` writes
(``<name>/train/data.csv``, ``<name>/test.csv`` with a 0/1 label, ``<name>/dataset.toml``);
the shipped sample data (its latest span, split 3:1 by a seeded draw) is added as ``sample``.
For each table: ``cartola init`` on the train folder, then one ``cartola run`` with the
config exactly as init proposed it (only CARTOLA_KEEP_CANDIDATES=1 in the environment, so
the Trainer also exports each candidate it tried). ``test.csv`` is scored with
``cartola.scoring.score_csv`` (the ``cartola score`` path) by the Trainer's exported model
(auto) and by each candidate. scikit-learn's figures use the preprocessing of
shared/datasets/baselines.py. Prints one table; ``--json`` writes the figures too.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("linear", "dnn", "gbt")
GOAL_MARGIN = 0.005


def _meta(base: Path) -> dict:
    text = (base / "dataset.toml").read_text(encoding="utf-8")
    return {key: re.search(rf'^{key} = "(.*)"', text, re.M).group(1)
            for key in ("label", "positive")}


def _sample_table(work: Path) -> Path:
    """The latest sample span as a fetch.py-style table (train 75% / test 25%, seeded)."""
    base = work / "sample_table"
    if (base / "test.csv").is_file():
        return base
    source = sorted((REPO / "data").glob("snapshot=*/*.csv"))[-1]
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    test_rows = np.random.default_rng(0).random(len(frame)) < 0.25
    (base / "train").mkdir(parents=True, exist_ok=True)
    frame[~test_rows].to_csv(base / "train" / "data.csv", index=False)
    frame[test_rows].to_csv(base / "test.csv", index=False)
    (base / "dataset.toml").write_text('label = "pro_target"\npositive = "1"\n',
                                       encoding="utf-8")
    return base


def _init_supports_positive_label() -> bool:
    out = subprocess.run([sys.executable, "-m", "cartola.cli", "init", "--help"],
                         capture_output=True, text=True, check=False).stdout
    return "--positive-label" in out


def _train_folder(base: Path, meta: dict, work: Path, positive_flag: bool) -> Path:
    """The train folder as fetched; a 0/1-recoded copy when init has no --positive-label."""
    if positive_flag or meta["positive"] == "1":
        return base / "train"
    copy = work / "train_recoded"
    copy.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(base / "train" / "data.csv", dtype=str, keep_default_na=False)
    frame[meta["label"]] = (frame[meta["label"]] == meta["positive"]).astype(int)
    frame.to_csv(copy / "data.csv", index=False)
    return copy


def _cartola(args, env=None, log=None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cartola.cli"] + list(args),
                            capture_output=True, text=True, env=env, check=False)
    if log is not None:
        log.write_text(result.stdout + result.stderr, encoding="utf-8")
    return result


def _latest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)


def _score(model_dir: Path, test_csv: Path, out_csv: Path, label: str):
    """(labels, probabilities) of the test rows the model scored, and how many it rejected."""
    # pylint: disable=import-outside-toplevel
    from cartola.scoring.batch import LocalScorer, score_csv
    from cartola.serving.model import ServedModel
    score_csv(test_csv, out_csv, LocalScorer(ServedModel.load(model_dir, 0)), None,
              id_column="", progress=False)
    scored = pd.read_csv(out_csv)
    labels = pd.read_csv(test_csv, usecols=[label])[label].to_numpy()
    rows = scored["line"].to_numpy() - 2  # line 1 is the header
    return labels[rows], scored["probability"].to_numpy(), len(labels) - len(scored)


def _figures(labels, scores) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score  # pylint: disable=import-outside-toplevel
    scores = np.clip(scores, 1e-7, 1 - 1e-7)
    return {"auc": float(roc_auc_score(labels, scores)),
            "log_loss": float(log_loss(labels, scores, labels=[0, 1]))}


def _sklearn(base: Path, meta: dict) -> dict:
    """baselines.py's two models on the same rows."""
    # pylint: disable=import-outside-toplevel
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    train = pd.read_csv(base / "train" / "data.csv")
    test = pd.read_csv(base / "test.csv")
    y = (train.pop(meta["label"]).astype(str) == meta["positive"]).astype(int).values
    y_test = test.pop(meta["label"]).values
    cat = [c for c in train.columns if train[c].dtype == object]
    num = [c for c in train.columns if c not in cat]
    out = {}
    for name, model in (("sk_lr", LogisticRegression(max_iter=2000)),
                        ("sk_hgb", HistGradientBoostingClassifier(random_state=0))):
        pre = make_column_transformer(
            (make_pipeline(SimpleImputer(), StandardScaler()), num),
            (make_pipeline(SimpleImputer(strategy="most_frequent"),
                           OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat))
        scores = make_pipeline(pre, model).fit(train, y).predict_proba(test)[:, 1]
        out[name] = _figures(y_test, scores)
    return out


def bench_table(  # pylint: disable=too-many-locals
        name: str, base: Path, work: Path, positive_flag: bool) -> dict:
    """Init, one run, and the test figures of every model for one table."""
    meta = _meta(base)
    work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    init = ["init", str(project), "--data", str(_train_folder(base, meta, work, positive_flag)),
            "--label", meta["label"], "--force"]
    if positive_flag and meta["positive"] != "1":
        init += ["--positive-label", meta["positive"]]
    result = _cartola(init, log=work / "init.log")
    if result.returncode:
        return {"name": name, "error": f"init: {result.stderr.strip().splitlines()[-1:]}"}
    env = {**os.environ, "CARTOLA_KEEP_CANDIDATES": "1"}
    env.pop("CARTOLA_CONFIG", None)
    begun = time.monotonic()
    run = _cartola(["--config", str(project / "config.toml"), "run"], env=env,
                   log=work / "run.log")
    row = {"name": name, "run_rc": run.returncode, "run_s": round(time.monotonic() - begun, 1),
           "blessed": "pushed model:" in run.stdout + run.stderr}
    trainer = list((project / "tfx_output" / "pipelines").glob("*/Trainer"))
    if not trainer:
        row["error"] = "no Trainer output (see run.log)"
        return row
    model_dir = _latest(trainer[0] / "model") / "Format-Serving"
    run_dir = _latest(trainer[0] / "model_run")
    info = json.loads((model_dir / "assets.extra" / "cartola_model.json").read_text())
    row["selected"] = info["family"]
    row["train_s"] = {c["family"]: c["seconds"] for c in info["candidates"]}
    models = {"auto": model_dir}
    models.update({family: run_dir / "candidates" / family for family in FAMILIES})
    for key, path in models.items():
        labels, scores, rejected = _score(path, base / "test.csv", work / f"scored_{key}.csv",
                                          meta["label"])
        row[key] = {**_figures(labels, scores), "rejected": rejected}
    row.update(_sklearn(base, meta))
    best = max(row["sk_lr"]["auc"], row["sk_hgb"]["auc"])
    row["goal_met"] = row["auto"]["auc"] >= best - GOAL_MARGIN
    return row


def _cell(figures) -> str:
    return f"{figures['auc']:.3f} {figures['log_loss']:.3f}" if figures else "      -      "


def print_table(rows) -> None:
    """One line per table: AUC and log loss per model, the choice, the goal."""
    heads = ["linear", "dnn", "gbt", "auto", "sk LR", "sk HGB"]
    print(f"{'table':14} " + " ".join(f"{h:>13}" for h in heads)
          + "  selected  blessed  goal  Trainer s (linear/dnn/gbt)")
    print(f"{'':14} " + " ".join(f"{'AUC  logloss':>13}" for _ in heads))
    for row in rows:
        if "error" in row:
            print(f"{row['name']:14} {row['error']}")
            continue
        cells = [row.get(k) for k in ("linear", "dnn", "gbt", "auto", "sk_lr", "sk_hgb")]
        times = "/".join(str(row["train_s"].get(f, "-")) for f in FAMILIES)
        print(f"{row['name']:14} " + " ".join(f"{_cell(c):>13}" for c in cells)
              + f"  {row['selected']:8}  {'yes' if row['blessed'] else 'no':7}  "
              f"{'yes' if row['goal_met'] else 'NO':4}  {times}")


def main(argv=None) -> int:
    """Run the bench over the fetched tables and the sample."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("datasets", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/model_quality"))
    parser.add_argument("--only", nargs="*", help="table names (default: all, and sample)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    tables = {p.name: p for p in sorted(args.datasets.iterdir()) if (p / "test.csv").is_file()}
    tables["sample"] = _sample_table(args.work)
    positive_flag = _init_supports_positive_label()
    rows = []
    for name, base in tables.items():
        if args.only and name not in args.only:
            continue
        rows.append(bench_table(name, base, args.work / name, positive_flag))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
