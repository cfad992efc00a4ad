"""Run the whole pipeline in this process with TFX's LocalDagRunner."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from cartola.versions import model_versions
from cartola.config import Config
from cartola.data.source import resolve_input
from cartola.orchestration import beam
from cartola.orchestration.progress import component_progress


def run_local(config: Config, data_root: Optional[str] = None,
              span: Optional[str] = None) -> dict:
    """Run the pipeline once on ``span`` (None: the latest); returns the span, the Beam
    choice, what changed in the serving folder and the wall time."""
    resolved = resolve_input(config, config.path(Path(data_root)) if data_root
                             else config.data_dir, span)
    # Imported here: the CLI answers --help and bad input without paying TFX's import time.
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=import-outside-toplevel
    from cartola.pipeline import create_pipeline  # pylint: disable=import-outside-toplevel
    before = model_versions(config.model_serving_dir)
    started = time.monotonic()
    pipeline = create_pipeline(config, data_root, resolved)
    choice = beam.for_span(config, resolved)
    print(f"beam: {choice.reason}", file=sys.stderr, flush=True)
    with component_progress(len(pipeline.components)):
        LocalDagRunner().run(pipeline)
    after = model_versions(config.model_serving_dir)
    pushed = sorted(set(after) - set(before))
    return {"seconds": time.monotonic() - started, "span": resolved, "beam": choice.reason,
            "pushed_version": pushed[-1] if pushed else None,
            "latest_version": after[-1] if after else None}
