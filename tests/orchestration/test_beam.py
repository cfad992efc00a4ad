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
    config = make_config(tmp_path, beam_multi_processing_mb=32)
    small = beam.choose(config, 9_700_000)
    assert small.args == ["--direct_running_mode=in_memory", "--direct_num_workers=1",
                          beam.LOCAL_DEPENDENCIES]
    assert small.reason == ("DirectRunner in-memory, 1 worker (9.7 MB of input < "
                            "beam_multi_processing_mb = 32)")
    assert not small.components
    large = beam.choose(config, 97_000_000)
    cores = worker_count(0)
    assert cores == len(os.sched_getaffinity(0)) and worker_count(3) == 3
    assert large.args == ["--direct_running_mode=multi_processing",
                          f"--direct_num_workers={cores}", beam.LOCAL_DEPENDENCIES]
    assert large.reason.endswith("(97.0 MB of input >= beam_multi_processing_mb = 32)")
    assert not large.components  # by default every Beam component runs on every core
    lean = beam.choose(make_config(tmp_path, beam_in_memory=("Transform", "Evaluator")),
                       97_000_000)
    assert lean.args == large.args
    assert lean.reason.endswith("; in-memory for Transform, Evaluator (beam_in_memory)")
    assert lean.components == {name: ["--direct_running_mode=in_memory",
                                      "--direct_num_workers=1"]
                               for name in ("Transform", "Evaluator")}
    assert beam.choose(config, None).reason.endswith("(input size unknown)")
    assert beam.choose(config, None).args[0] == "--direct_running_mode=in_memory"


def test_threaded_wins_over_in_memory(tmp_path):
    config = make_config(tmp_path, beam_in_memory=("Transform", "Evaluator"),
                         beam_threaded=("StatisticsGen", "Transform"))
    large = beam.choose(config, 97_000_000)
    assert large.reason.endswith("; in-memory for Evaluator (beam_in_memory); multi-threading "
                                 "for StatisticsGen, Transform (beam_threaded)")
    assert large.components == {
        "Evaluator": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        "StatisticsGen": ["--direct_running_mode=multi_threading"],
        "Transform": ["--direct_running_mode=multi_threading"]}
    default = beam.choose(make_config(tmp_path), 97_000_000).reason
    assert "beam_in_memory" not in default and "beam_threaded" not in default


def test_config_mode_workers_and_runner_override(tmp_path):
    forced = make_config(tmp_path, beam_mode="multi_processing", beam_workers=3,
                         beam_threaded=("Transform",),
                         beam_args=("--direct_running_mode_extra_flag_is_not_a_runner",))
    choice = beam.choose(forced, 10)
    assert choice.args == ["--direct_running_mode=multi_processing", "--direct_num_workers=3",
                           beam.LOCAL_DEPENDENCIES,
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


def test_direct_runner_options_spare_tfx_its_package_a_remote_runner_gets_it(tmp_path):
    # pylint: disable-next=import-outside-toplevel
    from tfx.utils import dependency_utils  # TFX: imported on use
    for size in (10, 10**9):
        args = beam.choose(make_config(tmp_path), size).args
        assert dependency_utils.make_beam_dependency_flags(args) == args  # nothing built
    own = beam.choose(make_config(tmp_path, beam_args=("--runner=FlinkRunner",)), 10).args
    assert beam.LOCAL_DEPENDENCIES not in own  # TFX's own package for remote workers


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


def test_component_modes_override_the_pipeline_mode_and_only_theirs(tmp_path):
    # pylint: disable-next=import-outside-toplevel
    from cartola.pipeline.definition import create_pipeline  # TFX: imported on use
    config = make_config(tmp_path, beam_in_memory=("Transform", "Evaluator"),
                         beam_threaded=("StatisticsGen",))
    choice = beam.choose(config, 10**9)
    pipeline = create_pipeline(config, beam_args=choice.args,
                               component_beam_args=choice.components)
    by_id = {c.id: c for c in pipeline.components if hasattr(c, "with_beam_pipeline_args")}
    modes = {name: _mode(component) for name, component in by_id.items()}
    assert modes == {"CsvExampleGen": "multi_processing", "StatisticsGen": "multi_threading",
                     "Transform": "in_memory", "Evaluator": "in_memory"}
    assert f"--direct_num_workers={worker_count(0)}" in \
        by_id["StatisticsGen"].executor_spec.beam_pipeline_args  # threads: one per core
    workers = [arg for arg in by_id["Transform"].executor_spec.beam_pipeline_args
               if arg.startswith("--direct_num_workers=")]
    assert workers[-1] == "--direct_num_workers=1"  # the last one is what Beam reads
    with pytest.raises(ConfigError, match="component Beam options: Trainer is not a Beam "
                                          "component"):
        create_pipeline(config, beam_args=choice.args,
                        component_beam_args={"Trainer": ["--direct_running_mode=in_memory"]})
    for key in ("beam_threaded", "beam_in_memory"):  # a small span: not applied, still checked
        typo = make_config(tmp_path, **{key: ("Transfrom",)})
        with pytest.raises(ConfigError, match=f"{key}: Transfrom is not a Beam component"):
            create_pipeline(typo, beam_args=beam.choose(typo, 10).args)
