"""A table as users export it, through ``cartola init`` and ``cartola run`` with no hand
edit: a yes/no label, an amount in steps of 15 (many ties), an integer area code, a column
that gives the label away; then a span with a unit bug is stopped by the drift gate, naming
the feature."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROWS = 4000


def exported_table(rows: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    """Churn-like rows as a CRM exports them; ``scale`` multiplies ``monthly_charges`` (a
    unit bug in a later export)."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    charges = np.round(rng.gamma(4.0, 18.0, rows), 2)
    expenses = 15 * rng.poisson(5, rows)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    logit = -0.04 * (tenure - 30) + 0.012 * (charges - 70) + np.where(plan == "basic", 0.5, -0.4)
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({
        "customer_id": np.arange(100_000, 100_000 + rows), "tenure": tenure,
        "monthly_charges": charges * scale, "expenses": expenses, "plan": plan,
        "community_area": rng.integers(1, 78, rows),
        "cancel_fee_paid": np.where(churn, rng.choice([30, 45, 60], rows), 0),
        "Churn": np.where(churn, "Yes", "No")})


@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_exported_table_init_run_push_then_unit_bug_stopped(tmp_path, capsys):
    # pylint: disable=import-outside-toplevel
    from cartola.cli import main
    from cartola.config import load_config
    from cartola.published.versions import model_versions
    root = tmp_path / "crm_churn"
    first = root / "snapshot=2026-11-02"
    first.mkdir(parents=True)
    exported_table(ROWS, 1).to_csv(first / "export.csv", index=False)
    target = tmp_path / "home"
    assert main(["init", str(target), "--data", str(root), "--label", "Churn"]) == 0
    printed = capsys.readouterr().out
    assert "name: crm_churn; label: Churn ('Yes' = 1, 'No' = 0); id column: customer_id" in printed
    assert "left out: community_area: an integer code" in printed
    assert "left out: cancel_fee_paid: alone it ranks the label with AUC" in printed
    config = load_config(target / "config.toml", environ={})
    assert (config.positive_label, config.negative_label) == ("Yes", "No")
    assert config.numeric_features == ("tenure", "monthly_charges", "expenses")
    assert config.categorical_features == ("plan",)
    assert config.model_name == "crm_churn"

    assert main(["--config", str(target / "config.toml"), "run"]) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    assert model_versions(config.model_serving_dir) == [1], printed
    # The served model names what its scores are the probability of.
    from cartola.serving.model import ServedModel
    assert ServedModel.load(config.model_serving_dir / "1").label == {
        "label": "Churn", "positive_label": "Yes"}
    drift_json = next(Path(config.pipeline_dir).glob("DriftGate/drift/*/drift.json"))
    assert '"failed": true' not in drift_json.read_text(encoding="utf-8")

    second = root / "snapshot=2026-11-09"
    second.mkdir()
    exported_table(ROWS, 2, scale=5.0).to_csv(second / "export.csv", index=False)
    assert main(["--config", str(target / "config.toml"), "run"]) == 3
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "[drift] feature 'monthly_charges': Jensen-Shannon divergence" in out, out
    assert "feature 'tenure'" not in out and "feature 'expenses'" not in out
    assert model_versions(config.model_serving_dir) == [1]
