"""Run the whole pipeline in this process with TFX's LocalDagRunner."""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Optional

from cartola.published.versions import model_versions
from cartola.config import Config
from cartola.console import COMPONENT
from cartola.data.source import resolve_input
from cartola.orchestration import beam, memory, rerun
from cartola.orchestration.progress import component_progress
from cartola.orchestration.run_lock import new_run_id


def _compiled(config: Config, data_root: Optional[str], span, choice, run_id: str) -> tuple:
    """The pipeline's IR for run ``run_id`` and its number of components."""
    # pylint: disable=import-outside-toplevel
    from tfx.dsl.compiler import compiler, constants
    from tfx.orchestration.portable import runtime_parameter_utils
    from cartola.pipeline.definition import create_pipeline
    pipeline = create_pipeline(config, data_root, span, beam_args=choice.args,
                               component_beam_args=choice.components)
    ir = compiler.Compiler().compile(pipeline)
    runtime_parameter_utils.substitute_runtime_parameter(
        ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    return ir, len(pipeline.components)


def run_local(config: Config, data_root: Optional[str] = None,
              span: Optional[str] = None, run_id: Optional[str] = None,
              reuse: bool = False) -> dict:
    """Run the pipeline once on ``span`` (None: the latest) as pipeline run ``run_id`` (None:
    a new one, named as LocalDagRunner names them); returns the run id, the span, the Beam
    choice, what changed in the serving folder and the wall time, or ``unchanged`` and the
    served version when ``reuse`` is set and the last run had the same inputs
    (:mod:`rerun`; ``cartola run`` sets it).

    The run id is chosen here, not inside LocalDagRunner, so the caller reports on its own
    run rather than on whichever run is the latest."""
    data_dir = config.input_dir(data_root)
    resolved = resolve_input(config, data_dir, span)
    key = rerun.fingerprint(config, resolved, data_dir) if rerun.applies(config) else ""
    last = rerun.unchanged(config, key) if reuse else None
    if last is not None:
        versions = last["serving"]["versions"]
        return {"unchanged": True, "span": resolved, "seconds": 0.0, "pushed_version": None,
                "served_version": last["serving"]["served"],
                "latest_version": versions[-1] if versions else None}
    # Imported here: the CLI answers --help and bad input without paying TFX's import time.
    # pylint: disable=import-outside-toplevel
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    before = model_versions(config.model_serving_dir)
    started = time.monotonic()
    choice = beam.for_span(config, resolved)
    print(f"beam: {choice.reason}", file=sys.stderr, flush=True)
    run_id = run_id or new_run_id()
    ir, components = _compiled(config, data_root, resolved, choice, run_id)
    rerun.forget(config)
    with component_progress(components, on_finished=lambda _: memory.release()) as progress:
        try:
            LocalDagRunner().run_with_ir(ir)
        except Exception as err:
            if progress.running:  # so the console's one line can name it
                with contextlib.suppress(AttributeError):
                    setattr(err, COMPONENT, progress.running)
            raise
    rerun.record(config, key, resolved)
    after = model_versions(config.model_serving_dir)
    pushed = sorted(set(after) - set(before))
    return {"run_id": run_id, "seconds": time.monotonic() - started, "span": resolved,
            "beam": choice.reason,
            "pushed_version": pushed[-1] if pushed else None,
            "latest_version": after[-1] if after else None}
