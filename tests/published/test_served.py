"""The served-version pin: rollback, promotion, pushes after a rollback, bad input."""
# pylint: disable=redefined-outer-name
import json

import pytest

from cartola.pipeline.components import publish_model
from cartola.published import served
from pipeline_helpers import fake_saved_model  # pylint: disable=wrong-import-order


@pytest.fixture
def three_versions(tmp_path):
    """A model folder with versions 1, 2 and 3 pushed the way the Pusher does."""
    base = tmp_path / "serving_model" / "m"
    for n in (1, 2, 3):
        assert publish_model(fake_saved_model(tmp_path / f"src{n}", f"fp-{n}".encode()),
                             base) == (n, True)
    return base


def test_highest_is_served_until_a_rollback_pins_one(three_versions):
    base = three_versions
    assert served.pinned_version(base) is None and served.served_version(base) == 3
    assert "versions: 3" in served.tf_serving_config_path(base).read_text()
    entry = served.rollback(base, None, "v3 scores everyone 0.5", by="ana")
    assert (entry["from"], entry["to"], entry["by"]) == (3, 2, "ana")
    assert served.served_version(base) == 2
    assert served.rollback(base, 1, "v2 too")["to"] == 1
    assert served.served_version(base) == 1
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["1", "2", "3"]
    log = served.served_log(base)
    assert [(e["action"], e["from"], e["to"]) for e in log] == [("rollback", 3, 2),
                                                                ("rollback", 2, 1)]
    assert log[0]["reason"] == "v3 scores everyone 0.5" and log[0]["at"]
    config = served.tf_serving_config_path(base).read_text()
    assert "model_version_policy { specific { versions: 1 } }" in config
    assert f'base_path: "{base.resolve()}"' in config and 'name: "m"' in config


def test_a_push_after_a_rollback_is_served_and_a_rolled_back_model_never_returns(
        three_versions, tmp_path):
    base = three_versions
    served.rollback(base, 1, "bad v2 and v3")
    # The model of version 3 again (same fingerprint): not pushed under a new number.
    assert publish_model(fake_saved_model(tmp_path / "again", b"fp-3"), base) == (3, False)
    assert served.served_version(base) == 1
    assert publish_model(fake_saved_model(tmp_path / "new", b"fp-4"), base) == (4, True)
    assert served.served_version(base) == 4 and served.pinned_version(base) == 4
    assert served.served_log(base)[-1]["action"] == "push"
    assert "versions: 4" in served.tf_serving_config_path(base).read_text()


def test_promote_any_existing_version(three_versions):
    served.rollback(three_versions, 1, "r")
    served.set_served(three_versions, 3, "promote", "fixed upstream")
    assert served.served_version(three_versions) == 3


@pytest.mark.parametrize("target, message", [(7, "version 7 does not exist"),
                                             (3, "version 3 is already served")])
def test_bad_rollback_changes_nothing(three_versions, target, message):
    before = sorted(p.name for p in three_versions.iterdir())
    with pytest.raises(served.ServedVersionError, match=message):
        served.rollback(three_versions, target, "r")
    assert sorted(p.name for p in three_versions.iterdir()) == before
    assert served.served_version(three_versions) == 3


def test_malformed_version_folder_is_refused(three_versions):
    (three_versions / "2" / "saved_model.pb").unlink()
    with pytest.raises(served.ServedVersionError, match=r"2: not a SavedModel \(missing "
                                                        r"saved_model.pb\)"):
        served.rollback(three_versions, 2, "r")
    assert served.pinned_version(three_versions) is None


def test_nothing_to_roll_back(tmp_path):
    with pytest.raises(served.ServedVersionError, match="no model version"):
        served.rollback(tmp_path / "empty", None, "r")
    base = tmp_path / "one"
    publish_model(fake_saved_model(tmp_path / "a"), base)
    with pytest.raises(served.ServedVersionError, match="earliest"):
        served.rollback(base, None, "r")


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": "2"}),
                                     json.dumps({"version": 0}), json.dumps([2])])
def test_unreadable_pin_is_a_clear_error(three_versions, content):
    (three_versions / served.SERVED_FILE).write_text(content)
    with pytest.raises(served.ServedVersionError, match=served.SERVED_FILE):
        served.served_version(three_versions)


def test_an_unreadable_pin_is_replaced_by_an_explicit_rollback(three_versions):
    (three_versions / served.SERVED_FILE).write_text("{broken")
    with pytest.raises(served.ServedVersionError, match=served.SERVED_FILE):
        served.rollback(three_versions, None, "r")
    assert served.rollback(three_versions, 2, "repair")["from"] is None
    assert served.served_version(three_versions) == 2
