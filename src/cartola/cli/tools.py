"""``cartola serve | score | report``: the tools that use the pushed model.

``register(subparsers)`` adds the three subcommands to the ``cartola`` parser; the parser
must define ``--config``. ``python -m cartola.cli.tools`` runs them on their own.
Heavy imports (TensorFlow, TFMA) happen inside the commands, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from cartola.config import ConfigError, load_config
from cartola.console import fail


def register(subparsers) -> None:
    """Add ``serve``, ``score`` and ``report`` to an ``add_subparsers()`` object."""
    from cartola.serving import server  # pylint: disable=import-outside-toplevel
    serve = subparsers.add_parser(
        "serve", help="TF Serving-compatible REST server over serving_model/<name>/",
        description="Serve the served model version (the highest, or the one a rollback "
                    "pinned) over TF Serving's REST API; a newly pushed version or a rollback "
                    "is picked up without a restart. See docs/SERVING.md.")
    server.add_arguments(serve)
    serve.set_defaults(func=_serve)

    score = subparsers.add_parser(
        "score", help="batch scoring: CSV in, CSV out with id, probability and segment",
        description="Score a CSV in chunks; write the id (or the line number when the data "
                    "set has no id column), the probability and, when the config has segments, "
                    "the segment (Cartola: churn_risk, conversion_target, neither); and the "
                    "rows that could not be scored with their line numbers.")
    score.add_argument("input", help="CSV with the raw feature columns (and the id and status "
                                     "columns when configured)")
    score.add_argument("output", help="CSV to write (replaced atomically)")
    score.add_argument("--rejects", help="CSV of rejected rows (default: <output>.rejects.csv)")
    score.add_argument("--churn-threshold", type=float,
                       help="PRO users below this probability are churn risk "
                            "(default: config churn_threshold)")
    score.add_argument("--conversion-threshold", type=float,
                       help="non-PRO users above this probability are conversion targets "
                            "(default: config conversion_threshold)")
    score.add_argument("--status-column",
                       help="0/1 column saying who is positive (PRO) today; '' for no segments "
                            "(default: config segment_status_column)")
    score.add_argument("--id-column", help="id column; '' for line numbers "
                                           "(default: config id_column)")
    score.add_argument("--chunk-rows", type=int, default=20_000,
                       help="rows held in memory at a time (default %(default)s)")
    score.add_argument("--server", metavar="URL",
                       help="score through a REST server (ours or TF Serving), e.g. "
                            "http://127.0.0.1:8501, instead of loading the model here")
    score.add_argument("--batch-size", type=int, default=1000,
                       help="rows per request with --server (default %(default)s)")
    score.add_argument("--model-dir", help="folder of versions (default: config serving dir)")
    score.add_argument("--version", type=int, help="model version (default: the served one)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.set_defaults(func=_score)

    report = subparsers.add_parser(
        "report", help="HTML report of a pipeline run (data, metrics, blessing, curves)",
        description="Write reports/<run id>/report.html for the latest run (or --run-id).")
    report.add_argument("--run-id", help="pipeline run id (default: the latest run)")
    report.add_argument("--list", action="store_true", help="list the known run ids and exit")
    report.add_argument("--assets-dir",
                        help="where report_*.png copies go (default: <project_home>/assets; "
                             "'' to skip)")
    report.set_defaults(func=_report)


def _serve(args: argparse.Namespace) -> int:
    import logging  # pylint: disable=import-outside-toplevel

    from cartola.serving import server  # pylint: disable=import-outside-toplevel
    config = load_config(args.config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("cartola").setLevel(logging.INFO)  # the server's lines, on a quiet console
    model_dir = Path(args.model_dir) if args.model_dir else config.model_serving_dir
    try:
        return server.serve(args, model_dir, args.model_name or config.model_name, config)
    except server.ServeError as err:  # no token beyond loopback, bad TLS files
        return fail(str(err))
    except OSError as err:  # port in use, permission denied
        return fail(f"cannot serve on {args.host}:{args.port}: {err}")


def _score(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    from cartola.scoring import batch as scoring
    from cartola.serving.client import ServingClient, ServingError
    from cartola.serving.model import ModelLoadError
    config = load_config(args.config)
    if not Path(args.input).is_file():
        return fail(f"input file not found: {args.input}")
    try:
        status = (config.segment_status_column if args.status_column is None
                  else args.status_column)
        rule = scoring.SegmentRule(  # checked before a model is loaded
            status_column=status,
            churn_threshold=(config.churn_threshold if args.churn_threshold is None
                             else args.churn_threshold),
            conversion_threshold=(config.conversion_threshold
                                  if args.conversion_threshold is None
                                  else args.conversion_threshold),
            names=tuple(config.segment_names)) if status else None
        if args.server:
            scorer = scoring.HttpScorer(ServingClient(args.server, config.model_name,
                                                      args.version), args.batch_size)
        else:
            model_dir = Path(args.model_dir) if args.model_dir else config.model_serving_dir
            scorer = scoring.LocalScorer.from_serving_dir(model_dir, args.version)
        summary = scoring.score_csv(args.input, args.output, scorer, rule,
                                    id_column=(config.id_column if args.id_column is None
                                               else args.id_column),
                                    chunk_rows=args.chunk_rows, rejects=args.rejects,
                                    progress=not args.no_progress,
                                    delimiter=config.csv_delimiter, decimal=config.csv_decimal)
    except (scoring.ScoringError, ServingError, ModelLoadError, ValueError) as err:
        return fail(str(err))
    from cartola.data.labels import LabelCoding  # pylint: disable=import-outside-toplevel
    print(f"scored with {scorer.description}; scores are "
          f"{LabelCoding.from_config(config).scores()}")
    print(summary.table())
    print(f"rejected rows: {summary.rejects}")
    return 1 if summary.rows and not summary.scored else 0


def _report(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    from cartola.reports import run_report as report
    from cartola.registry.runs import RegistryError, list_runs
    config = load_config(args.config)
    try:
        if args.list:
            print("\n".join(list_runs(config)))
            return 0
        path = report.build_report(config, args.run_id, args.assets_dir)
    except RegistryError as err:
        return fail(str(err))
    print(f"run report: {path}")
    return 0


def report_after_run(config, run_id: Optional[str] = None) -> Optional[Path]:
    """The report of run ``run_id`` (default: the latest) for ``cartola run`` to print; a
    report that cannot be made is a warning, not a failed run."""
    try:
        from cartola.reports import run_report as report  # pylint: disable=import-outside-toplevel
        return report.build_report(config, run_id)
    except Exception as err:  # pylint: disable=broad-except
        print(f"cartola: warning: no run report: {type(err).__name__}: {err}", file=sys.stderr)
        return None


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m cartola.cli.tools serve|score|report ...``."""
    parser = argparse.ArgumentParser(prog="python -m cartola.cli.tools",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        return fail(str(err))


if __name__ == "__main__":
    sys.exit(main())
