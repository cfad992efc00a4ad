"""``cartola`` command line: run the pipeline locally and the project's tools."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from cartola import console
from cartola.cli import tools as tools_cli
from cartola.config import ConfigError, load_config
from cartola.errors import DataValidationError, InputDataError, RunFaultError
from cartola.monitoring import commands as monitor_commands
from cartola.cli import registry_commands
from cartola.registry.runs import RegistryError, node_timings


def _print_report(config, run_id: Optional[str] = None) -> None:
    try:
        print(f"components: {node_timings(config, run_id)}")
    except RegistryError as err:
        print(f"cartola: warning: no component timings: {err}", file=sys.stderr)
    report = tools_cli.report_after_run(config, run_id)
    if report is not None:
        print(f"run report: {report}")
    from cartola.reports.history_page import history_page_after_run  # pylint: disable=import-outside-toplevel
    page = history_page_after_run(config)
    if page is not None:
        print(f"run history: {page}")


def _why_not_pushed(config, run_id: str) -> str:
    from cartola.reports import outcome  # pylint: disable=import-outside-toplevel
    try:
        return outcome.why_not_pushed(config, run_id)
    except Exception as err:  # pylint: disable=broad-except
        return f"reason unknown ({type(err).__name__}: {err})"


def _run(args) -> int:
    # pylint: disable=import-outside-toplevel
    from cartola.orchestration import run_lock
    config = load_config(args.config)
    run_id = run_lock.new_run_id()
    try:
        with run_lock.hold(config.project_home, run_id, wait=not args.no_wait,
                           say=lambda line: print(f"cartola: {line}", file=sys.stderr,
                                                  flush=True)):
            return _run_locked(args, config, run_id)
    except run_lock.RunLockBusy as err:
        print(f"cartola: {err}", file=sys.stderr)
        return 3


def _run_locked(args, config, run_id: str) -> int:
    """``cartola run`` while it holds the project home."""
    console.quiet_google_warnings()
    # pylint: disable=import-outside-toplevel
    from cartola.monitoring import notify
    from cartola.orchestration.local import run_local
    where = {"data": args.data_root or str(config.data_dir), "span": args.span or "latest"}
    with notify.warnings_to_stderr():  # a failed notification is one line, never the exit code
        try:
            result = run_local(config, args.data_root, args.span, run_id, reuse=True)
        except DataValidationError as err:
            print(f"cartola: run stopped at data validation; nothing trained or pushed.\n{err}",
                  file=sys.stderr)
            gate = "drift gate" if err.kind == "drift_stop" else "schema gate"
            notify.notify(config, err.kind, f"cartola run stopped at the {gate}", str(err),
                          where)
            _print_report(config, run_id)  # the report lists the anomalies beside the statistics
            return 3
        except InputDataError as err:  # refused before TFX: the files themselves
            notify.notify(config, "data_rejected", "cartola run refused its input", str(err),
                          where)
            raise
        except RunFaultError as err:  # a server or the disk: one line, nothing half-written
            print(f"cartola: run failed: {err}", file=sys.stderr)
            notify.notify(config, "run_failed", "cartola run failed", str(err), where)
            return 1
        except Exception as err:
            notify.notify(config, "run_failed", "cartola run failed",
                          f"{type(err).__name__}: {err}", where)
            raise
        if result.get("unchanged"):
            version = result["served_version"]
            print("nothing changed; " + (f"serving version {version}" if version
                                         else "no model is served"))
            return 0
        serving = config.model_serving_dir
        print(f"pipeline finished in {result['seconds']:.1f} s on span {result['span'].name} "
              f"({result['span'].location})")
        print(f"beam: {result['beam']}")
        if result["pushed_version"] is not None:
            print(f"pushed model: {serving / str(result['pushed_version'])}")
            notify.notify(config, "version_pushed",
                          f"model version {result['pushed_version']} pushed",
                          f"cartola run pushed model version {result['pushed_version']} to "
                          f"{serving / str(result['pushed_version'])}.",
                          {"version": result["pushed_version"],
                           "destination": serving / str(result["pushed_version"]),
                           "span": result["span"].name,
                           **(notify.run_facts(config)
                              if notify.wanted(config, "version_pushed") else {})})
        else:
            latest = result["latest_version"]
            print(f"no model pushed: {_why_not_pushed(config, run_id)}; serving: "
                  + (str(serving / str(latest)) if latest else "none"))
        print(f"run artifacts: {config.pipeline_dir}")
        _print_report(config, run_id)
    return 0


def _names(text: Optional[str]) -> List[str]:
    """Column names of a comma-separated flag value."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _init(args) -> int:
    console.quiet_google_warnings()
    from cartola.data.checks import check_text_inputs  # pylint: disable=import-outside-toplevel
    check_text_inputs(Path(args.data))
    from cartola.data.init import init_dataset  # pylint: disable=import-outside-toplevel
    config_path, schema_path, proposal = init_dataset(
        Path(args.dir), Path(args.data), args.label, args.id_column, args.force,
        positive_label=args.positive_label, exclude=_names(args.exclude),
        keep=_names(args.keep), name=args.name)
    coding = proposal["coding"]
    print(f"name: {proposal['name']}; label: {proposal['label']}"
          + (f" ({coding.positive!r} = 1, {coding.negative!r} = 0)" if coding.active else "")
          + f"; id column: {proposal['id_column'] or '(none)'}")
    print(f"numeric features: {', '.join(proposal['numeric_features']) or '(none)'}")
    print(f"categorical features: {', '.join(proposal['categorical_features']) or '(none)'}")
    for note in proposal["notes"]:
        print(f"left out: {note}")
    for name, auc in proposal["leaks"].items():
        if name in _names(args.keep):
            print(f"warning: kept {name!r} (--keep), which alone ranks the label with AUC "
                  f"{auc:.3f}: a probable leak")
    print(f"wrote {config_path} and {schema_path}; review them, then:\n"
          f"  cartola --config {config_path} run")
    return 0


def _load_sample(args) -> int:
    from cartola.data import postgres  # pylint: disable=import-outside-toplevel
    config = load_config(args.config)
    changes = {"source": "postgresql", "db_table": args.table or config.db_table}
    if args.local:
        # pylint: disable=import-outside-toplevel
        from cartola.orchestration.services import LocalServices, ServiceError
        services = LocalServices(config.airflow_dir)
        try:
            changes["db_uri"], secret = services.data_location(args.database)
            services.start_postgres()
            services.create_database(args.database)
        except ServiceError as err:
            raise InputDataError(str(err)) from None
        changes["db_password_file"] = str(secret)
    elif args.uri:
        changes["db_uri"] = args.uri
    config = config.replace(**changes)
    data_dir = config.input_dir(args.data_root)
    loaded = postgres.load_spans(config, data_dir, replace=args.replace)
    print(f"loaded into {postgres.PostgresSource(config).where} at {config.db_uri}:")
    for day, rows in loaded:
        print(f"  {day}: {rows:,} rows")
    print("train from it with:\n  export CARTOLA_SOURCE=postgresql "
          f"CARTOLA_DB_URI={config.db_uri} CARTOLA_DB_TABLE={config.db_table}"
          + (f" CARTOLA_DB_PASSWORD_FILE={config.db_password_file}"
             if config.db_password_file else "") + "\n  cartola run")
    return 0


def _log_path(args) -> Optional[Path]:
    """The command's library log: in the new project's folder for ``init``, else beside the
    pipeline's artifacts; None (no redirection) when the config cannot be read."""
    if args.command == "init":
        return console.log_path_for(Path(args.dir) / "logs", args.command)
    try:
        return console.log_path_for(load_config(args.config).pipeline_dir / "logs", args.command)
    except ConfigError:
        return None


def _dispatch(args) -> int:
    try:
        return args.func(args)
    except (ConfigError, InputDataError) as err:
        print(f"cartola: {err}", file=sys.stderr)
        return 2


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``cartola`` command."""
    parser = argparse.ArgumentParser(prog="cartola", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show the libraries' output (TensorFlow, absl, Beam, TFMA) on the "
                             "console instead of in the run's log file")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline end to end with LocalDagRunner")
    run.add_argument("--data-root", help="data root: span folders or CSV files "
                                         "(default: config data_root)")
    run.add_argument("--span", help="span to train on: YYYY-MM-DD for date spans, a number "
                                    "for {SPAN} patterns (default: the latest)")
    run.add_argument("--no-wait", action="store_true",
                     help="exit 3 at once when another run holds the project home (default: "
                          "wait for it, saying which run it is every 30 s)")
    run.set_defaults(func=_run)
    init = commands.add_parser(
        "init", help="propose a config and a curated schema for a new CSV data set",
        description="Read a folder of CSV files (checks, then TFDV statistics) and write "
                    "DIR/config.toml and DIR/schema.pbtxt for review; the config starts from "
                    "neutral defaults (no id unless one is found, no clipping, no slice).")
    init.add_argument("dir", help="folder for the config, the schema and the run's outputs")
    init.add_argument("--data", required=True,
                      help="the data set's CSV file, or a folder of them (or of span folders)")
    init.add_argument("--label", required=True, help="the two-valued column to predict")
    init.add_argument("--positive-label", help="the label value to predict (read as 1); "
                                               "default: 1, or the yes/true side of the pair")
    init.add_argument("--exclude", help="columns to leave out, comma-separated")
    init.add_argument("--keep", help="columns to keep although init would leave them out as "
                                     "probable leaks, comma-separated")
    init.add_argument("--name", help="pipeline and model name (default: the data folder's)")
    init.add_argument("--id-column", help="id column ('' for none; default: guessed)")
    init.add_argument("--force", action="store_true", help="replace an existing config/schema")
    init.set_defaults(func=_init)
    load = commands.add_parser(
        "load-sample", help="load the span folders into a PostgreSQL table (source = "
                            "'postgresql')",
        description="Create db_table (columns typed by the curated schema, plus "
                    "snapshot_column) and COPY each span folder's CSV files into it as one "
                    "snapshot date. --local uses the PostgreSQL server of the local Airflow's "
                    "production profile (started on 127.0.0.1 if needed).")
    where = load.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true",
                       help="the local server, database --database (created if missing)")
    where.add_argument("--uri", help="postgresql://user@host:port/database (default: config "
                                     "db_uri; password: $CARTOLA_DB_PASSWORD or "
                                     "db_password_file)")
    load.add_argument("--database", default="cartola_data",
                      help="database on the local server (default %(default)s)")
    load.add_argument("--table", help="table (default: config db_table)")
    load.add_argument("--data-root", help="span folders to load (default: config data_root)")
    load.add_argument("--replace", action="store_true", help="drop the table first")
    load.set_defaults(func=_load_sample)
    tools_cli.register(commands)
    registry_commands.register(commands)
    monitor_commands.register(commands)
    for sub in commands.choices.values():  # also after the command: cartola run --verbose
        sub.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return console.run_quietly(_dispatch, args, _log_path(args), args.verbose)
