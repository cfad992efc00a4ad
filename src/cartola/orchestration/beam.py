"""Beam pipeline options by data size: the in-memory DirectRunner for small spans, its
multi-processing mode on every core for large ones (in memory or multi-threading for the
components that do not need processes), or whatever runner the config names."""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import List, Mapping, NamedTuple, Optional

from cartola.config import split_pattern, worker_count
from cartola.data.spans import FLAT_PATTERN, Span

# Options that mean the user chose the runner or its mode: beam_args then win outright.
_RUNNER_FLAGS = ("--runner", "--direct_running_mode", "--direct_num_workers")
# TFX's Beam executors repackage TFX's own installation for remote workers on every run of
# every Beam component (a 48 MB copy and a `setup.py sdist` subprocess, 1 to 2 s, left in
# the temp folder) unless the options name where the workers' dependencies come from
# (tfx.utils.dependency_utils). The DirectRunner's workers run this interpreter, and it
# neither stages packages nor reads an SDK image, so naming one ends the repackaging.
LOCAL_DEPENDENCIES = "--sdk_container_image=none"


class BeamChoice(NamedTuple):
    """The pipeline's Beam options and why (the run summary prints ``reason``); ``components``:
    options added for some components (by id), after the pipeline's, so theirs win."""

    args: List[str]
    reason: str
    components: Mapping[str, List[str]] = MappingProxyType({})


def data_bytes(folder: Optional[Path], files_glob: str) -> Optional[int]:
    """Bytes of a span's input files, or None when there is no folder to measure."""
    if folder is None or not folder.is_dir():
        return None
    return sum(path.stat().st_size for path in folder.glob(files_glob) if path.is_file())


def choose(config, size: Optional[int]) -> BeamChoice:
    """Beam options for a span of ``size`` bytes (None: unknown, e.g. a node that reads no
    input files).

    ``beam_args`` naming a runner or DirectRunner mode win as given. Otherwise ``beam_mode``
    decides; "auto" picks multi-processing from ``beam_multi_processing_mb`` of input up,
    since starting a worker pool costs more than it saves on small data.
    """
    extra = list(config.beam_args)
    if any(arg.split("=", 1)[0] in _RUNNER_FLAGS for arg in extra):
        return BeamChoice(extra, "runner from beam_args")
    mode = config.beam_mode
    megabytes = None if size is None else size / 1e6
    if mode == "auto":
        large = megabytes is not None and megabytes >= config.beam_multi_processing_mb
        mode = "multi_processing" if large else "in_memory"
        why = ("input size unknown" if megabytes is None else
               f"{megabytes:.1f} MB of input {'>=' if large else '<'} "
               f"beam_multi_processing_mb = {config.beam_multi_processing_mb:g}")
    else:
        why = f"beam_mode = {mode}"
    count = worker_count(config.beam_workers) if mode != "in_memory" else 1
    reason = (f"DirectRunner {mode.replace('_', '-')}, {count} worker{'s' if count > 1 else ''}"
              f" ({why})")
    components = {}
    if config.beam_mode == "auto" and mode == "multi_processing":
        # A component named in both runs multi-threaded, as beam_threaded is applied last.
        for key, own_mode, names, more in (
                ("beam_in_memory", "in_memory", [name for name in config.beam_in_memory
                                                 if name not in config.beam_threaded],
                 ["--direct_num_workers=1"]),
                ("beam_threaded", "multi_threading", config.beam_threaded, [])):
            components.update((name, [f"--direct_running_mode={own_mode}"] + more)
                              for name in names)
            if names:
                reason += f"; {own_mode.replace('_', '-')} for {', '.join(names)} ({key})"
    return BeamChoice([f"--direct_running_mode={mode}", f"--direct_num_workers={count}",
                       LOCAL_DEPENDENCIES] + extra, reason, components)


def for_span(config, span: Optional[Span]) -> BeamChoice:
    """Beam options for a run on ``span`` (None: not known to this process)."""
    if span is not None and span.size is not None:
        return choose(config, span.size)  # a database span: its size there
    files = FLAT_PATTERN if span is None or span.flat else split_pattern(config.span_pattern)[1]
    return choose(config, data_bytes(span.folder if span is not None else None, files))
