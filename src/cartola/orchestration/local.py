"""Run the whole pipeline in this process with TFX's LocalDagRunner."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from cartola.versions import model_versions
from cartola.config import Config
from cartola.data.checks import check_input_dir


def run_local(config: Config, data_root: Optional[str] = None) -> dict:
    """Run the pipeline once; returns what changed in the serving folder and the wall time."""
    check_input_dir(config.path(Path(data_root)) if data_root else config.data_dir,
                    config.csv_delimiter, config.csv_decimal)
    # Imported here: the CLI answers --help and bad input without paying TFX's import time.
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=import-outside-toplevel
    from cartola.pipeline import create_pipeline  # pylint: disable=import-outside-toplevel
    before = model_versions(config.model_serving_dir)
    started = time.monotonic()
    LocalDagRunner().run(create_pipeline(config, data_root))
    after = model_versions(config.model_serving_dir)
    pushed = sorted(set(after) - set(before))
    return {"seconds": time.monotonic() - started,
            "pushed_version": pushed[-1] if pushed else None,
            "latest_version": after[-1] if after else None}
