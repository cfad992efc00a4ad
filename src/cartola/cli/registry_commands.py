"""``cartola runs | models | lineage | rollback | promote``: look back over the runs and
choose the served version. ``register(subparsers)`` adds them to the ``cartola`` parser."""
from __future__ import annotations

import argparse

from cartola.config import load_config
from cartola.console import fail, quiet_google_warnings


def register(subparsers) -> None:
    """Add the registry's subcommands to an ``add_subparsers()`` object."""
    runs = subparsers.add_parser(
        "runs", help="one line per pipeline run, from ML Metadata",
        description="Start, duration, trigger, data, anomalies, challenger and champion KS/AUC, "
                    "blessing, outcome and report of every run; also refreshes the run-history "
                    "page (reports/index.html).")
    runs.add_argument("--last", type=int, help="only the last N runs")
    runs.set_defaults(func=_runs)

    models = subparsers.add_parser("models", help="model versions with metrics and provenance")
    models.set_defaults(func=_models)

    lineage = subparsers.add_parser(
        "lineage", help="what a version was made from, or which versions learned from data",
        description="With VERSION: every artifact behind that version, back to the input files. "
                    "With --data and/or --span: the versions trained on that data.")
    lineage.add_argument("version", nargs="?", type=int, help="a pushed model version")
    lineage.add_argument("--data", help="an input folder (forward lineage)")
    lineage.add_argument("--span", help="a span of the input, YYYY-MM-DD for date spans "
                                        "(forward lineage)")
    lineage.set_defaults(func=_lineage)

    for name, help_text in (("rollback", "serve an earlier version (default: the one before)"),
                            ("promote", "serve a given version")):
        command = subparsers.add_parser(
            name, help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}: pins it in served.json and "
                        "the TF Serving model config, atomically, deleting nothing; records "
                        "who, when and why in served_log.jsonl. `cartola serve` follows "
                        "within its poll interval; the next run's Evaluator baseline is it.")
        if name == "rollback":
            command.add_argument("--to", type=int, help="version to serve")
        else:
            command.add_argument("to", type=int, help="version to serve")
        command.add_argument("--reason", required=True, help="why (recorded)")
        command.set_defaults(func=_set_served, action=name)


def _runs(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    quiet_google_warnings()
    from cartola.reports.history_page import write_history_page
    from cartola.registry.history import format_table, history
    from cartola.registry.runs import RegistryError
    config = load_config(args.config)
    try:
        rows = history(config, args.last)
        print(format_table(rows))
        print(f"history page: {write_history_page(config)}")
    except RegistryError as err:
        return fail(str(err))
    return 0


def _models(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    quiet_google_warnings()
    from cartola.models import model_info
    from cartola.published import served
    from cartola.registry.history import history
    from cartola.registry.runs import RegistryError
    from cartola.published.versions import model_versions
    config = load_config(args.config)
    base = config.model_serving_dir
    try:
        now = served.served_version(base)
        by_version = {r.pushed_version: r for r in history(config) if r.pushed_version}
    except (RegistryError, served.ServedVersionError) as err:
        return fail(str(err))
    versions = model_versions(base)
    if not versions:
        return fail(f"no model version under {base}; run the pipeline first")
    print(f"{'':2}{'version':>7}  {'KS':>6}  {'AUC':>6}  {'pushed':19}  run / data; model")
    for version in reversed(versions):
        row = by_version.get(version)
        metrics = "  ".join("     -" if value is None else f"{value:6.3f}"
                            for value in ((row.ks, row.auc) if row else (None, None)))
        when = row.started.isoformat(sep=" ", timespec="seconds") if row else "-"
        origin = f"{row.run_id} / {row.data}" if row else "not in this ML Metadata store"
        family = model_info.describe(model_info.read_info(base / str(version)))
        print(f"{'*' if version == now else '':2}{version:>7}  {metrics}  {when:19}  {origin}; "
              f"{family}")
    print(f"* served ({'pinned in served.json' if served.pinned_version(base) else 'highest'})")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    from cartola.data.spans import parse_requested
    from cartola.errors import InputDataError
    from cartola.registry import lineage
    from cartola.registry.runs import RegistryError
    config = load_config(args.config)
    if (args.version is None) == (args.data is None and args.span is None):
        return fail("lineage needs a VERSION, or --data and/or --span (not both)")
    try:
        if args.version is not None:
            for step in lineage.backward(config, args.version):
                print(step.line())
            return 0
        span = None if args.span is None else parse_requested(args.span, config.span_pattern)
        found = lineage.forward(config, args.data, span)
    except (RegistryError, InputDataError) as err:
        return fail(str(err))
    if not found:
        print("no pushed version was trained on that data")
    for version, runs in found.items():
        print(f"version {version}: trained in run {', '.join(runs)}")
    return 0


def _set_served(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    from cartola.published import served
    config = load_config(args.config)
    base = config.model_serving_dir
    try:
        if args.action == "rollback":
            entry = served.rollback(base, args.to, args.reason)
        else:
            entry = served.set_served(base, args.to, "promote", args.reason)
    except served.ServedVersionError as err:
        return fail(str(err))
    print(f"serving version {entry['to']} (was {entry['from']}); recorded in "
          f"{base / served.LOG_FILE}; TF Serving config: {served.tf_serving_config_path(base)}")
    return 0
