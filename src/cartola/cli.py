"""``cartola`` command line: run the pipeline locally and the project's tools."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import List, Optional

from cartola import tools_cli
from cartola.config import ConfigError, load_config
from cartola.errors import DataValidationError, InputDataError


def _print_report(config) -> None:
    from cartola import report as reports  # pylint: disable=import-outside-toplevel
    try:
        print(f"components: {reports.node_timings(config)}")
    except reports.ReportError as err:
        print(f"cartola: warning: no component timings: {err}", file=sys.stderr)
    report = tools_cli.report_after_run(config)
    if report is not None:
        print(f"run report: {report}")


def _run(args) -> int:
    # TFX's Google client libraries warn at import that Python 3.10 is old; TFX 1.16 needs it.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config = load_config(args.config)
    try:
        result = run_local(config, args.data_root)
    except DataValidationError as err:
        print(f"cartola: run stopped at data validation; nothing trained or pushed.\n{err}",
              file=sys.stderr)
        _print_report(config)  # the report lists the anomalies beside the data statistics
        return 3
    serving = config.model_serving_dir
    print(f"pipeline finished in {result['seconds']:.1f} s")
    if result["pushed_version"] is not None:
        print(f"pushed model: {serving / str(result['pushed_version'])}")
    else:
        latest = result["latest_version"]
        print("no model pushed (not blessed, or identical to the served one); serving: "
              + (str(serving / str(latest)) if latest else "none"))
    print(f"run artifacts: {config.pipeline_dir}")
    _print_report(config)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``cartola`` command."""
    parser = argparse.ArgumentParser(prog="cartola", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline end to end with LocalDagRunner")
    run.add_argument("--data-root", help="folder of CSV files (default: config data_root)")
    run.set_defaults(func=_run)
    tools_cli.register(commands)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, InputDataError) as err:
        print(f"cartola: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
