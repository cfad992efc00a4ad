"""The Trainer alone, side by side in one run: TFX's ``run_fn`` on the Transform output a
finished `cartola run` left in a project home, once per setting asked for (each in a fresh
process, so TensorFlow's thread pools and caches start cold), printing each one's wall time,
the per-family lines and the ratio to the first.

    python bench/scale.py --rows 1000000 --keep   # or any `cartola run`; then:
    python bench/trainer.py HOME                              # cache on (default) vs off
    python bench/trainer.py HOME --settings "trainer_cache_mb=0;;model_family=linear"

Settings are ``;``-separated sets of ``name=value`` config overrides (``,`` between
several); an empty set is the configuration as it is.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def newest(folder: Path) -> Path:
    """The artifact folder with the highest execution id under ``folder``."""
    return max((path for path in folder.iterdir() if path.name.isdigit()),
               key=lambda path: int(path.name))


def child() -> None:
    """In the child process: ``run_fn`` once on ``$CARTOLA_HOME``'s newest Transform output,
    with the configuration the environment gives."""
    # pylint: disable=import-outside-toplevel
    from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
    from tfx_bsl.public import tfxio

    from cartola.config import load_config
    from cartola.models import features
    from cartola.models.trainer import run_fn

    config = load_config()
    transform = Path(config.pipeline_dir) / "Transform"
    examples = newest(transform / "transformed_examples")
    graph = newest(transform / "transform_graph")

    def factory(files, options, schema):
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)

    with tempfile.TemporaryDirectory(prefix="cartola-trainer-") as out:
        run_fn(FnArgs(
            train_files=[str(examples / "Split-train" / "*")],
            eval_files=[str(examples / "Split-eval" / "*")],
            transform_graph_path=str(graph), serving_model_dir=os.path.join(out, "model"),
            model_run_dir=os.path.join(out, "logs"),
            data_accessor=DataAccessor(tf_dataset_factory=factory, record_batch_factory=None,
                                       data_view_decode_fn=None),
            custom_config=features.feature_spec(config)))


def parse(settings: str) -> list:
    """``"a=1,b=2;;c=3"`` -> [{"a": "1", "b": "2"}, {}, {"c": "3"}]."""
    sets = []
    for group in settings.split(";"):
        pairs = [item.split("=", 1) for item in group.split(",") if item.strip()]
        sets.append({name.strip(): value.strip() for name, value in pairs})
    return sets


def main() -> int:
    """Run each setting in its own process; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("home", help="a project home a `cartola run` finished in")
    parser.add_argument("--settings", default=";trainer_cache_mb=0")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    results = []
    for overrides in parse(args.settings):
        env = dict(os.environ, CARTOLA_HOME=str(Path(args.home).resolve()),
                   **{f"CARTOLA_{name.upper()}": value for name, value in overrides.items()})
        started = time.monotonic()
        done = subprocess.run([sys.executable, __file__, args.home, "--child"], env=env,
                              check=False, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wall = time.monotonic() - started
        lines = [line for line in done.stdout.splitlines() if line.startswith((
            "training ", "linear:", "dnn:", "gbt", "selected", "early stopping", "epoch "))]
        results.append((overrides, wall, done.returncode))
        label = ",".join(f"{k}={v}" for k, v in overrides.items()) or "as configured"
        print(f"{label}: exit {done.returncode}, {wall:.1f} s", flush=True)
        for line in lines if done.returncode == 0 else done.stdout.splitlines()[-5:]:
            print(f"    {line}")
    first = results[0][1]
    for overrides, wall, _ in results[1:]:
        label = ",".join(f"{k}={v}" for k, v in overrides.items()) or "as configured"
        print(f"{label} / first: {wall / first:.2f}")
    return 0 if all(rc == 0 for _, _, rc in results) else 1


if __name__ == "__main__":
    sys.exit(main())
