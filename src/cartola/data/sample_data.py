"""Synthetic Cartola PRO users: a seeded, deterministic stand-in for the study's private data.

One row per user: an ``id``, the binary label ``pro_target`` (1 = PRO subscriber) and the study's
feature columns (Portuguese names, as in the study). The generator plants what the baseline
(``refactored_code``) is meant to find:

* the label is a logistic function of ``anos_como_pro``, ``avg_3`` and ``avg_4`` clipped at 1,
  ``escalacoes``, ``norm_escalacao`` and ``log1p(tempo_desperd)``, plus unobserved noise;
* seven columns are, after the baseline's transforms, near-linear combinations of others
  (``interacoes_g1``, ``norm_rodadas``, ``rel_pont``, ``dif_melhoria``, ``iteracao_atletismo``,
  ``max_camp``, ``anos_desde_criacao``), so VIF elimination removes exactly them;
* the remaining columns are correlated with the users' engagement but carry no signal of
  their own, so pruning by coefficient drops them;
* long-tailed counts, missing values, a few negative sentinels and malformed ``pixels`` strings.

Rows are generated in fixed-size chunks, each from its own seed derived from ``(seed, chunk)``,
so a file of any size is reproducible, memory stays bounded, and a smaller sample is a prefix of
a larger one with the same seed.

Weekly snapshots (spans, ``data/snapshot=YYYY-MM-DD/``) change the way a user base does: the
latest span is the sample above; each earlier week lacks the users who joined since (3% a
week), still has those who left since (2% a week), and has fewer lineups (``escalacoes``
counts the season's lineups so far). An optional span after the latest plants a drift in a
model feature (``avg_3`` shifted up, as after a scoring-rule change).

Regenerate the shipped spans with ``python -m cartola.data.sample_data`` (see ``--help``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd

from cartola.config import load_config

DEFAULT_ROWS = 20_000
DEFAULT_SEED = 42
CHUNK_ROWS = 50_000
FILE_NAME = "cartola_sample.csv"
# Weekly snapshots: folder name, date of the latest, and the week-to-week change.
SPAN_FOLDER = "snapshot={date}"
LATEST_SNAPSHOT = dt.date(2026, 11, 16)
DEFAULT_WEEKS = 3
JOINED_PER_WEEK = 0.03
LEFT_PER_WEEK = 0.02
LINEUP_RATE = 0.6
DRIFT_FEATURE = "avg_3"
DRIFT_SHIFT = 0.3
# Cartola FC launched in 2005: no account (nor PRO subscription) is older than this.
MAX_ACCOUNT_YEARS = 20

ID_COLUMN = "id"
LABEL = "pro_target"
COLUMNS = [
    ID_COLUMN, "anos_como_pro", "anos_desde_criacao", "escalacoes", "norm_escalacao",
    "norm_rodadas", "avg_3", "avg_4", "tempo_desperd", "interacoes", "interacoes_g1",
    "iteracao_volei", "iteracao_atletismo", "instagram_num", "facebook_num", "min_camp",
    "max_camp", "rel_pont", "dif_melhoria", "pixels", LABEL,
]
# Integer-valued columns; pandas' nullable Int64 keeps them integers in the CSV when cells
# are missing.
INTEGER_COLUMNS = [
    ID_COLUMN, "anos_como_pro", "anos_desde_criacao", "escalacoes", "interacoes",
    "interacoes_g1", "iteracao_volei", "iteracao_atletismo", "instagram_num", "facebook_num",
    LABEL,
]
# Share of missing cells per column. The label and five of the six model features stay
# complete; tempo_desperd gets a few gaps and negative sentinels, as in production logs.
MISSING_RATES = {
    "anos_desde_criacao": 0.02, "norm_rodadas": 0.02, "tempo_desperd": 0.03,
    "interacoes": 0.04, "interacoes_g1": 0.04, "iteracao_volei": 0.06,
    "iteracao_atletismo": 0.06, "instagram_num": 0.12, "facebook_num": 0.10,
    "min_camp": 0.03, "max_camp": 0.03, "rel_pont": 0.02, "dif_melhoria": 0.02,
    "pixels": 0.04,
}
# Share of cells replaced by the -1 sentinel some clients log for "unknown".
NEGATIVE_RATES = {"tempo_desperd": 0.01, "interacoes": 0.005}
MALFORMED_PIXEL_RATE = 0.02

SCREENS = ["1920x1080", "1366x768", "1536x864", "1440x900", "1280x720", "2560x1440",
           "390x844", "414x896", "360x800", "412x915"]
SCREEN_WEIGHTS = [0.22, 0.12, 0.08, 0.05, 0.05, 0.04, 0.14, 0.10, 0.12, 0.08]
MALFORMED_SCREENS = ["1920x", "x1080", "unknown", "1366*768", "0x0", "auto"]

# Logistic model of the label on the six model features (clipped and log-transformed values).
LABEL_INTERCEPT = -13.07
LABEL_WEIGHTS = {
    "anos_como_pro": 1.1, "ceil_avg_3": 3.7, "ceil_avg_4": 3.7, "escalacoes": 0.07,
    "norm_escalacao": 2.75, "log_tempo_desperd": 0.75,
}
LABEL_NOISE = 0.6
# Noise sd of a planted collinear column relative to each standardised parent.
PLANTED_NOISE = 0.45


def _counts(log_values: np.ndarray) -> np.ndarray:
    """Integer counts whose log1p is ``log_values`` (rounded, never negative)."""
    return np.rint(np.expm1(np.maximum(log_values, 0.0))).astype(np.int64)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-values))


def _planted(rng: np.random.Generator, columns: Dict[str, np.ndarray],
             *parents: str) -> np.ndarray:
    """Noisy sum of the named columns, each standardised first ("-name" enters negated).

    Three parents per planted column, and no parent feeding more than two, keep the planted
    column's VIF above its parents', so iterative elimination removes it and not them.
    """
    total = np.zeros(len(next(iter(columns.values()))))
    for parent in parents:
        values = columns[parent.lstrip("-")]
        sign = -1.0 if parent.startswith("-") else 1.0
        total += sign * (values - values.mean()) / values.std()
    return (total + PLANTED_NOISE * rng.standard_normal(len(total))) / np.sqrt(len(parents))


def _chunk(rng: np.random.Generator, n_rows: int) -> pd.DataFrame:
    """One chunk of clean (complete, well-formed) users."""
    normal = rng.standard_normal
    engagement = normal(n_rows)  # how much a user uses the app overall
    skill = normal(n_rows)  # how well a user plays
    loyalty = normal(n_rows)  # taste for paying

    # The baseline's view of each column (log1p, clipped) drives the label and the planted
    # collinearity, so both hold on the scale the baseline sees.
    base = {
        "anos_como_pro": np.minimum(rng.poisson(np.exp(-0.6 + 1.1 * loyalty)),
                                    MAX_ACCOUNT_YEARS),
        "escalacoes": rng.binomial(38, _sigmoid(0.4 + 0.9 * engagement + 0.3 * loyalty)),
        "norm_escalacao": _sigmoid(0.6 * skill + 0.5 * engagement + 0.7 * normal(n_rows)),
        "avg_3": np.maximum(0.8 + 0.22 * (0.75 * skill + 0.66 * normal(n_rows)), 0.0),
        "avg_4": np.maximum(0.8 + 0.22 * (0.75 * skill + 0.66 * normal(n_rows)), 0.0),
        "tempo_desperd": np.round(np.expm1(4.0 + 0.6 * engagement + 0.8 * normal(n_rows)), 1),
        "log_interacoes": 3.0 + 0.6 * engagement + 0.8 * normal(n_rows),
        "log_volei": 1.8 + 0.3 * engagement + 0.9 * normal(n_rows),
        "log_instagram": np.maximum(1.2 + 0.9 * normal(n_rows), 0.0),
        "log_facebook": np.maximum(1.4 + 0.2 * engagement + 0.8 * normal(n_rows), 0.0),
        "min_camp": np.clip(0.35 + 0.1 * skill + 0.12 * normal(n_rows), 0.0, 1.0),
    }
    base["ceil_avg_3"] = np.minimum(base["avg_3"], 1.0)
    base["ceil_avg_4"] = np.minimum(base["avg_4"], 1.0)
    base["log_tempo_desperd"] = np.log1p(base["tempo_desperd"])

    logit = LABEL_INTERCEPT + LABEL_NOISE * normal(n_rows) + sum(
        weight * base[name] for name, weight in LABEL_WEIGHTS.items())
    label = (rng.random(n_rows) < _sigmoid(logit)).astype(np.int64)

    # Drawn in this order (the order fixes the random stream, hence the shipped file).
    planted = {name: _planted(rng, base, *parents) for name, parents in [
        ("anos_desde_criacao", ("anos_como_pro", "log_interacoes", "log_tempo_desperd")),
        ("norm_rodadas", ("escalacoes", "norm_escalacao", "anos_como_pro")),
        ("interacoes_g1", ("log_interacoes", "log_tempo_desperd", "log_volei")),
        ("iteracao_atletismo", ("log_volei", "log_instagram", "log_facebook")),
        ("max_camp", ("min_camp", "log_facebook", "escalacoes")),
        ("rel_pont", ("ceil_avg_3", "ceil_avg_4", "norm_escalacao")),
        ("dif_melhoria", ("ceil_avg_4", "-ceil_avg_3", "min_camp")),
    ]}
    return pd.DataFrame({
        "anos_como_pro": base["anos_como_pro"],
        # Nobody has been PRO for longer than they have had an account.
        "anos_desde_criacao": np.clip(_counts(1.6 + 0.35 * planted["anos_desde_criacao"]),
                                      base["anos_como_pro"], MAX_ACCOUNT_YEARS),
        "escalacoes": base["escalacoes"],
        "norm_escalacao": np.round(base["norm_escalacao"], 4),
        "norm_rodadas": np.round(np.clip(0.55 + 0.15 * planted["norm_rodadas"], 0.0, 1.0), 4),
        "avg_3": np.round(base["avg_3"], 4),
        "avg_4": np.round(base["avg_4"], 4),
        "tempo_desperd": base["tempo_desperd"],
        "interacoes": _counts(base["log_interacoes"]),
        "interacoes_g1": _counts(2.2 + 0.8 * planted["interacoes_g1"]),
        "iteracao_volei": _counts(base["log_volei"]),
        "iteracao_atletismo": _counts(1.5 + 0.8 * planted["iteracao_atletismo"]),
        "instagram_num": _counts(base["log_instagram"]),
        "facebook_num": _counts(base["log_facebook"]),
        "min_camp": np.round(base["min_camp"], 4),
        "max_camp": np.round(np.clip(0.6 + 0.12 * planted["max_camp"], 0.0, 1.0), 4),
        "rel_pont": np.round(0.8 + 0.12 * planted["rel_pont"], 4),
        "dif_melhoria": np.round(0.1 * planted["dif_melhoria"], 4),
        "pixels": rng.choice(SCREENS, size=n_rows, p=SCREEN_WEIGHTS).astype(object),
        LABEL: label,
    })


def _corrupt(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Add the defects of real logs: missing cells, -1 sentinels, malformed screen strings."""
    n_rows = len(frame)
    for column in INTEGER_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    for column, rate in NEGATIVE_RATES.items():
        frame.loc[rng.random(n_rows) < rate, column] = -1
    malformed = rng.random(n_rows) < MALFORMED_PIXEL_RATE
    frame.loc[malformed, "pixels"] = rng.choice(MALFORMED_SCREENS, size=int(malformed.sum()))
    for column, rate in MISSING_RATES.items():
        frame.loc[rng.random(n_rows) < rate, column] = None
    return frame


def iter_chunks(n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED,
                chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield the sample in chunks of at most ``chunk_rows`` users, ids 1..n_rows.

    Chunk ``k`` is drawn from ``SeedSequence(seed, spawn_key=(k,))`` and always generated at full
    size (then truncated), so its rows do not depend on ``n_rows``.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    for index, start in enumerate(range(0, n_rows, chunk_rows)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        frame = _corrupt(_chunk(rng, chunk_rows), rng).iloc[:min(chunk_rows, n_rows - start)]
        frame.insert(0, ID_COLUMN, pd.array(np.arange(start + 1, start + len(frame) + 1),
                                            dtype="Int64"))
        yield frame.reset_index(drop=True)[COLUMNS]


def generate(n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The whole sample as one frame (use :func:`write_csv` for very large samples)."""
    return pd.concat(list(iter_chunks(n_rows, seed)), ignore_index=True)


def weekly_spans(weeks: int = DEFAULT_WEEKS, n_rows: int = DEFAULT_ROWS,
                 seed: int = DEFAULT_SEED, latest: dt.date = LATEST_SNAPSHOT,
                 drift: bool = False) -> Iterator[Tuple[dt.date, pd.DataFrame]]:
    """(snapshot date, users) per week, oldest first; the latest week is ``generate(n_rows)``.

    ``drift`` adds a week after the latest with ``DRIFT_FEATURE`` shifted by ``DRIFT_SHIFT``.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be positive, got {weeks}")
    joined, left = int(n_rows * JOINED_PER_WEEK), int(n_rows * LEFT_PER_WEEK)
    if n_rows - (weeks - 1) * joined < 1:
        raise ValueError(f"{n_rows} users are too few for {weeks} weeks")
    users = generate(n_rows + left * (weeks - 1), seed)
    ids = users[ID_COLUMN].to_numpy(dtype=np.int64)
    # Users after the first n_rows left before the latest week: the first `left` of them
    # one week before, the next `left` two weeks before, ...
    left_weeks_ago = np.where(ids > n_rows, 1 + (ids - n_rows - 1) // max(left, 1), 0)
    for weeks_ago in range(weeks - 1, -1, -1):
        present = (ids <= n_rows - weeks_ago * joined) | (
            (left_weeks_ago > 0) & (left_weeks_ago <= weeks_ago))
        frame = users[present].reset_index(drop=True)
        if weeks_ago:
            rng = np.random.default_rng(
                np.random.SeedSequence(seed, spawn_key=(10_000 + weeks_ago,)))
            fewer = rng.binomial(weeks_ago, LINEUP_RATE, size=len(frame))
            frame["escalacoes"] = (frame["escalacoes"] - fewer).clip(lower=0)
        yield latest - dt.timedelta(weeks=weeks_ago), frame
    if drift:
        frame = users[ids <= n_rows].reset_index(drop=True)
        frame[DRIFT_FEATURE] = np.round(frame[DRIFT_FEATURE] + DRIFT_SHIFT, 4)
        yield latest + dt.timedelta(weeks=1), frame


def write_spans(root: os.PathLike, weeks: int = DEFAULT_WEEKS, n_rows: int = DEFAULT_ROWS,
                seed: int = DEFAULT_SEED, latest: dt.date = LATEST_SNAPSHOT,
                drift: bool = False) -> List[Path]:
    """Write :func:`weekly_spans` as ``root/snapshot=YYYY-MM-DD/cartola_sample.csv`` files."""
    return [_write_frames(Path(root) / SPAN_FOLDER.format(date=day.isoformat()) / FILE_NAME,
                          [frame])
            for day, frame in weekly_spans(weeks, n_rows, seed, latest, drift)]


def write_csv(path: os.PathLike, n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> Path:
    """Write the sample to ``path`` chunk by chunk; the file appears only once complete."""
    return _write_frames(Path(path), iter_chunks(n_rows, seed))


def _write_frames(path: Path, frames: Iterable[pd.DataFrame]) -> Path:
    """Write ``frames`` to ``path`` as one CSV file, atomically.

    The rows go to a hidden temporary file in the same folder (not ``*.csv``, so CsvExampleGen
    never picks it up), which then replaces ``path`` atomically.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # pylint: disable=consider-using-with
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
        newline="", encoding="utf-8")
    try:
        with handle:
            for index, chunk in enumerate(frames):
                chunk.to_csv(handle, index=False, header=index == 0, lineterminator="\n")
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: write the weekly sample spans (or one CSV file)."""
    parser = argparse.ArgumentParser(
        prog="python -m cartola.data.sample_data",
        description="Write the synthetic Cartola PRO sample as weekly snapshot folders "
                    "(deterministic for a given seed).")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"number of users (default {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--weeks", type=int, default=DEFAULT_WEEKS,
                        help=f"weekly spans, the latest dated {LATEST_SNAPSHOT} "
                             f"(default {DEFAULT_WEEKS})")
    parser.add_argument("--latest", type=dt.date.fromisoformat, default=LATEST_SNAPSHOT,
                        help="date of the latest span (default %(default)s)")
    parser.add_argument("--drift", action="store_true",
                        help=f"add a span a week after the latest with {DRIFT_FEATURE} "
                             f"shifted by {DRIFT_SHIFT} (a planted drift)")
    parser.add_argument("--out", type=Path, default=None,
                        help="data root of the spans (default: the config's data_root); with "
                             "--single, the CSV file")
    parser.add_argument("--single", action="store_true",
                        help="write one CSV file (the latest span) instead of span folders")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.weeks < 1:
        parser.error("--rows and --weeks must be positive")
    out = args.out or load_config().data_dir
    try:
        if args.single:
            written = [write_csv(out if args.out else out / FILE_NAME, args.rows, args.seed)]
        else:
            written = write_spans(out, args.weeks, args.rows, args.seed, args.latest, args.drift)
    except (OSError, ValueError) as err:
        print(f"sample_data: cannot write {out}: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
