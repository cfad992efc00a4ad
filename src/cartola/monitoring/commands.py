"""The ``cartola monitor`` command (light: TFDV and TensorFlow load when it runs)."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from cartola.config import load_config

# Exit codes: the checks passed, a check is past its threshold, monitoring could not run.
PASSED, FAILED, CANNOT_RUN = 0, 3, 2


def _time(value: str) -> dt.datetime:
    """An ISO date or time, UTC unless it names a zone."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _monitor(args) -> int:
    # pylint: disable=import-outside-toplevel
    # TensorFlow's C++ and Python warnings would bury the one line a user acts on.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging
    from cartola.monitoring.monitor import MonitorError, run_monitor
    from cartola.console import quiet_google_warnings
    quiet_google_warnings()
    absl_logging.set_verbosity(absl_logging.ERROR)
    config = load_config(args.config)
    if args.hours is not None:
        config = config.replace(monitor_window_hours=args.hours)
    try:
        result = run_monitor(config, batch=args.batch, since=args.since, until=args.until)
    except MonitorError as err:
        print(f"cartola monitor: {err}", file=sys.stderr)
        return CANNOT_RUN
    score = result["score"]
    print(f"version {result['version']} (span {result['span']}): {result['traffic']}")
    print(f"score drift: PSI {score['psi']:.4f}, KS {score['ks']:.4f}; feature skew: max "
          + (max((f"{r['value']:.4f} ({r['feature']})" for r in result["skew"]),
                 key=lambda text: float(text.split()[0])) if result["skew"] else "n/a"))
    print(f"monitor report: {result['report']}")
    if result["problems"]:
        print("cartola monitor: past a threshold:\n" + "\n".join(result["problems"]),
              file=sys.stderr)
        return FAILED
    print("within every threshold")
    return PASSED


def register(commands) -> None:
    """Add ``monitor`` to the ``cartola`` subcommands."""
    monitor = commands.add_parser(
        "monitor", help="compare the served model's traffic with its training data",
        description="Feature skew (TFDV, Jensen-Shannon) and score drift (PSI, KS) of the "
                    "rows `cartola serve` logged in a window, or of a batch CSV, against the "
                    "served version's training data; writes an HTML report. Exit 0: within "
                    "thresholds, 3: past one, 2: cannot monitor (no served version, no traffic).")
    monitor.add_argument("--batch", help="a CSV of users to score and check instead of the "
                                         "request logs")
    monitor.add_argument("--hours", type=float, help="window: the last N hours (default: "
                                                     "config monitor_window_hours)")
    monitor.add_argument("--since", type=_time, help="window start (ISO, UTC by default)")
    monitor.add_argument("--until", type=_time, help="window end (default: now)")
    monitor.set_defaults(func=_monitor)
