"""Atomic versioned publishing, the anomaly report and the KS metric's arithmetic."""
import numpy as np
import pytest
from scipy import stats

from cartola.pipeline.components import describe_anomalies, publish_model
from cartola.errors import RunFaultError
from cartola.published.versions import model_versions
from cartola.pipeline.metrics import ks_from_matrices
from pipeline_helpers import FakeMatrices, fake_saved_model  # pylint: disable=wrong-import-order


def test_versions_increase_and_ignore_non_numeric(tmp_path):
    base = tmp_path / "serving" / "m"
    assert publish_model(fake_saved_model(tmp_path / "a"), base) == (1, True)
    assert publish_model(fake_saved_model(tmp_path / "b", b"fp-2"), base) == (2, True)
    (base / ".staging-leftover").mkdir()
    (base / "notes").mkdir()
    assert model_versions(base) == [1, 2]
    assert (base / "2" / "variables" / "variables.index").read_bytes() == b"index"
    assert not [p for p in base.iterdir() if p.name.startswith(".staging-") and
                p.name != ".staging-leftover"]


def test_identical_model_is_not_pushed_again(tmp_path):
    base = tmp_path / "m"
    model = fake_saved_model(tmp_path / "a")
    assert publish_model(model, base) == (1, True)
    assert publish_model(model, base) == (1, False)
    assert model_versions(base) == [1]


def test_taken_version_moves_to_next_number(tmp_path, monkeypatch):
    """A concurrent writer that takes version N between listing and rename."""
    base = tmp_path / "m"
    publish_model(fake_saved_model(tmp_path / "a"), base)
    from cartola.pipeline import components  # pylint: disable=import-outside-toplevel
    real = components.model_versions

    def stale_listing(path):
        (base / "2").mkdir(exist_ok=True)
        (base / "2" / "saved_model.pb").write_bytes(b"other")
        return real(path)[:1]
    monkeypatch.setattr(components, "model_versions", stale_listing)
    assert publish_model(fake_saved_model(tmp_path / "b", b"fp-2"), base) == (3, True)
    assert (base / "2" / "saved_model.pb").read_bytes() == b"other"


def test_failed_copy_leaves_nothing_visible(tmp_path):
    base = tmp_path / "m"
    with pytest.raises(RunFaultError, match=r"cannot copy the model into .*: No such file or "
                                            r"directory .* served version is unchanged \(none\)"):
        publish_model(tmp_path / "missing", base)
    assert not list(base.iterdir())


def test_describe_anomalies_names_feature_kind_and_split():
    from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=import-outside-toplevel
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["pro_target"]
    info.description = "Unexpectedly large value: 2."
    info.reason.add(type=anomalies_pb2.AnomalyInfo.INT_TYPE_BIG_INT)
    anomalies.dataset_anomaly_info.description = "Low num examples in dataset."
    anomalies.dataset_anomaly_info.reason.add(
        type=anomalies_pb2.AnomalyInfo.DATASET_LOW_NUM_EXAMPLES)
    lines = describe_anomalies({"train": anomalies})
    assert lines == [
        "[train] feature 'pro_target': INT_TYPE_BIG_INT: Unexpectedly large value: 2.",
        "[train] dataset: DATASET_LOW_NUM_EXAMPLES: Low num examples in dataset."]


def test_ks_from_matrices_matches_scipy():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    expected = stats.ks_2samp(scores[labels == 1], scores[labels == 0]).statistic
    thresholds = np.sort(np.unique(np.concatenate([[-1e-7], scores])))
    assert ks_from_matrices(FakeMatrices(scores, labels, thresholds)) == pytest.approx(expected)


def test_ks_is_nan_with_one_class():
    scores = np.array([0.2, 0.8])
    assert np.isnan(ks_from_matrices(FakeMatrices(scores, np.array([1, 1]), [0.5])))
