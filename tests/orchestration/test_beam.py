"""Beam options by span size: in memory on one worker for small spans, multi-processing on
every core for large ones, the config's mode or runner when it names one."""
from __future__ import annotations

import os

import pytest

from conftest import LATEST_SPAN, make_config
from cartola.config import ConfigError, worker_count
from cartola.data.spans import Span, resolve_span
from cartola.orchestration import beam


def test_auto_picks_by_size_and_says_why(tmp_path):
    config = make_config(tmp_path, beam_multi_processing_mb=32,
                         beam_threaded=("StatisticsGen", "Transform"))
    small = beam.choose(config, 9_700_000)
    assert small.args == ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert small.reason == ("DirectRunner in-memory, 1 worker (9.7 MB of input < "
                            "beam_multi_processing_mb = 32)")
    large = beam.choose(config, 97_000_000)
    cores = worker_count(0)
    assert cores == len(os.sched_getaffinity(0)) and worker_count(3) == 3
    assert large.args == ["--direct_running_mode=multi_processing",
                          f"--direct_num_workers={cores}"]
    assert "97.0 MB of input >= beam_multi_processing_mb = 32" in large.reason
    assert large.reason.endswith("; multi-threading for StatisticsGen, Transform "
                                 "(beam_threaded)")
    assert large.components == {name: ["--direct_running_mode=multi_threading"]
                                for name in ("StatisticsGen", "Transform")}
    assert not small.components
    unthreaded = beam.choose(make_config(tmp_path), 97_000_000)  # the default
    assert not unthreaded.components and "beam_threaded" not in unthreaded.reason
    assert beam.choose(config, None).reason.endswith("(input size unknown)")
    assert beam.choose(config, None).args[0] == "--direct_running_mode=in_memory"


def test_config_mode_workers_and_runner_override(tmp_path):
    forced = make_config(tmp_path, beam_mode="multi_processing", beam_workers=3,
                         beam_threaded=("Transform",),
                         beam_args=("--direct_running_mode_extra_flag_is_not_a_runner",))
    choice = beam.choose(forced, 10)
    assert choice.args == ["--direct_running_mode=multi_processing", "--direct_num_workers=3",
                           "--direct_running_mode_extra_flag_is_not_a_runner"]
    assert choice.reason == ("DirectRunner multi-processing, 3 workers "
                             "(beam_mode = multi_processing)")
    assert not choice.components  # a mode the user forced holds for every component
    assert beam.choose(make_config(tmp_path, beam_mode="in_memory"), 10**12).args[0] == \
        "--direct_running_mode=in_memory"
    own = make_config(tmp_path, beam_args=("--runner=FlinkRunner", "--parallelism=4"))
    assert beam.choose(own, 10**12) == (["--runner=FlinkRunner", "--parallelism=4"],
                                        "runner from beam_args", {})
    with pytest.raises(ConfigError, match="beam_mode must be"):
        make_config(tmp_path, beam_mode="fast")
    with pytest.raises(ConfigError, match="beam_workers must be >= 0"):
        make_config(tmp_path, beam_workers=-1)


def test_span_size_counts_the_span_files_only(tmp_path):
    config = make_config(tmp_path)
    span = resolve_span(LATEST_SPAN.parent, config.span_pattern)
    size = sum(p.stat().st_size for p in LATEST_SPAN.glob("*.csv"))
    assert f"{size / 1e6:.1f} MB of input" in beam.for_span(config, span).reason
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.csv").write_text("x,y\n1,2\n", encoding="utf-8")
    (flat / "notes.txt").write_text("not input" * 1000, encoding="utf-8")
    assert beam.data_bytes(flat, "*.csv") == 8
    assert "0.0 MB of input" in beam.for_span(config, Span(0, flat, flat=True)).reason
    assert beam.for_span(config, None).reason.endswith("(input size unknown)")
    assert beam.data_bytes(tmp_path / "gone", "*.csv") is None


def _mode(component) -> str:
    """The DirectRunner mode a component runs in: its last ``--direct_running_mode``, as
    Beam's option parser reads it."""
    modes = [arg.split("=", 1)[1] for arg in component.executor_spec.beam_pipeline_args
             if arg.startswith("--direct_running_mode=")]
    return modes[-1]


def test_threaded_components_override_the_pipeline_mode_and_only_they(tmp_path):
    # pylint: disable-next=import-outside-toplevel
    from cartola.pipeline.definition import create_pipeline  # TFX: imported on use
    config = make_config(tmp_path, beam_threaded=("StatisticsGen", "Transform"))
    choice = beam.choose(config, 10**9)
    pipeline = create_pipeline(config, beam_args=choice.args,
                               component_beam_args=choice.components)
    by_id = {c.id: c for c in pipeline.components if hasattr(c, "with_beam_pipeline_args")}
    modes = {name: _mode(component) for name, component in by_id.items()}
    assert modes["StatisticsGen"] == modes["Transform"] == "multi_threading"
    assert modes["Evaluator"] == "multi_processing"
    assert f"--direct_num_workers={worker_count(0)}" in \
        by_id["Transform"].executor_spec.beam_pipeline_args  # threads: one per core
    with pytest.raises(ConfigError, match="beam_threaded: Trainer is not a Beam component"):
        create_pipeline(config, beam_args=choice.args,
                        component_beam_args={"Trainer": ["--direct_running_mode=in_memory"]})
    typo = make_config(tmp_path, beam_threaded=("Transfrom",))  # a small span: not applied
    with pytest.raises(ConfigError, match="beam_threaded: Transfrom is not a Beam component"):
        create_pipeline(typo, beam_args=beam.choose(typo, 10).args)
