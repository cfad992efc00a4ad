"""Parse time and peak memory of our DAG file against the same pipeline wrapped by TFX's
AirflowDagRunner (bench/airflow_dag_runner_dag.py), in one run.

Ours is parsed under Airflow 3 (this venv); the AirflowDagRunner file under Airflow 2.11
(bench/airflow2_env.py), since TFX 1.16's Airflow runner cannot run on Airflow 3.
Each measurement is a fresh interpreter that first imports the Airflow modules the
DAG processor already holds (so both files are charged only for their own
imports), then loads the file with ``DagBag`` as the processor does. Printed per DAG: parse
seconds (the figure Airflow compares with ``dagbag_import_timeout``, 30 s by default), peak RSS
of the process and the RSS the parse added. A "cold" parse (a bare interpreter, as in every
``airflow tasks run`` or ``airflow dags list``) is measured too.

    python bench/dag_parse.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import airflow2_env

REPO = Path(__file__).resolve().parents[1]
DAGS = {"ours (src/tfx_pipeline.py), Airflow 3": REPO / "src" / "tfx_pipeline.py",
        "AirflowDagRunner (bench/airflow_dag_runner_dag.py), Airflow 2.11":
            REPO / "bench" / "airflow_dag_runner_dag.py"}
HEAVY = ("tensorflow", "tfx")

CHILD = r"""
import json, resource, sys, time
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if sys.argv[2] == "warm":
    # What the DAG processor already holds when it parses a file.
    import airflow.dag_processing.processor  # noqa
try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
    options = {}
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag
    options = {"include_examples": False}
before = rss_mb()
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False, **options)
seconds = time.perf_counter() - started
print("RESULT " + json.dumps({
    "seconds": seconds, "peak_rss_mb": rss_mb(), "added_rss_mb": rss_mb() - before,
    "dags": sorted(bag.dags), "errors": {k: str(v)[-300:] for k, v in bag.import_errors.items()},
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))}))
"""


def measure(dag_file: Path, mode: str, env: dict) -> dict:
    """One parse of ``dag_file`` in a fresh interpreter (the anchor's in its Airflow 2.11 venv:
    TFX's AirflowDagRunner cannot run on Airflow 3)."""
    python = sys.executable
    if dag_file.parent.name == "bench":
        python, env = str(airflow2_env.python()), airflow2_env.env(env)
    result = subprocess.run([python, "-c", CHILD, str(dag_file), mode, ",".join(HEAVY)],
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        raise RuntimeError(f"parse of {dag_file} failed:\n{result.stdout}\n{result.stderr}")
    data = json.loads(lines[-1][len("RESULT "):])
    if data["errors"] or not data["dags"]:
        raise RuntimeError(f"{dag_file}: import errors {data['errors']}")
    return data


def main() -> int:
    """Print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="parses per DAG and mode")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dag_parse_") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Let the slow file finish so it can be measured (the default is 30 s).
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
            # Parsing the AirflowDagRunner file writes under the project home: use a temp one.
            "CARTOLA_PROJECT_HOME": str(Path(tmp) / "project"),
            "CARTOLA_DATA_ROOT": env.get("CARTOLA_DATA_ROOT", str(REPO / "data")),
            "CARTOLA_SCHEMA_PATH": env.get("CARTOLA_SCHEMA_PATH",
                                           str(REPO / "schema" / "schema.pbtxt")),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        })
        rows = {}
        for name, path in DAGS.items():
            for mode in ("warm", "cold"):
                runs = [measure(path, mode, env) for _ in range(args.repeat)]
                rows[(name, mode)] = {
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                    "added_rss_mb": statistics.median(r["added_rss_mb"] for r in runs),
                    "heavy": runs[0]["heavy"]}
                print(f"  measured {name} [{mode}] x{args.repeat}", file=sys.stderr, flush=True)
    print(f"DAG parse, median of {args.repeat} (load average at start {load:.1f}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'DAG file':52} {'mode':5} {'parse s':>8} {'peak RSS MB':>12} {'added MB':>9}  "
          "TF/TFX imported")
    for (name, mode), row in rows.items():
        print(f"{name:52} {mode:5} {row['seconds']:8.3f} {row['peak_rss_mb']:12.0f} "
              f"{row['added_rss_mb']:9.0f}  {'yes' if row['heavy'] else 'no'}")
    ours, theirs = DAGS
    for mode in ("warm", "cold"):
        a, b = rows[(ours, mode)], rows[(theirs, mode)]
        print(f"ratio AirflowDagRunner / ours [{mode}]: parse time "
              f"{b['seconds'] / a['seconds']:.0f}x, "
              f"peak RSS {b['peak_rss_mb'] / a['peak_rss_mb']:.1f}x")
    warm = rows[(ours, "warm")]
    ok = warm["seconds"] <= 1.0 and warm["peak_rss_mb"] <= 200 and not warm["heavy"]
    print(f"target (ours, warm: parse <= 1 s, peak RSS <= 200 MB, no TF/TFX): "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
