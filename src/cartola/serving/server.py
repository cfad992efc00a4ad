"""A TF Serving-compatible REST server over the integer versions Pusher writes.

The command line of ``cartola serve`` and ``python -m cartola.serving.server``: loads the
served version (:mod:`cartola.serving.core`), serves the HTTP API of :mod:`cartola.serving.app`
under uvicorn, and on SIGTERM or Ctrl-C stops gracefully: running requests finish, the
version watcher stops and the request log closes, so its open file is renamed complete.
This module imports FastAPI, uvicorn and TensorFlow only when serving starts, so
``cartola --help`` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import List, Optional

from cartola.serving.core import (DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES,
                                  DEFAULT_POLL_SECONDS, DEFAULT_PORT)

LOG = logging.getLogger("cartola.serving")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cartola serve``; model folder and name default to the config."""
    parser.add_argument("--model-dir", help="folder of integer versions (default: "
                        "<serving_dir>/<model_name> from the config)")
    parser.add_argument("--model-name", help="name in the URL (default: config model_name)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}, TF Serving's; 0 = any free port)")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS,
                        help="how often to look for a new version (default %(default)s)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body accepted (default %(default)s)")
    parser.add_argument("--max-instances", type=int, default=DEFAULT_MAX_INSTANCES,
                        help="most rows per predict request (default %(default)s)")
    parser.add_argument("--request-log-dir",
                        help="request logs go to DIR/<model name> (default: config "
                             "request_log_dir, <project_home>/request_logs)")
    parser.add_argument("--request-log-sample", type=_share, metavar="SHARE",
                        help="share of scored rows logged, 0 to 1 (default: config "
                             "request_log_sample; 0 = no log)")
    parser.add_argument("--no-request-log", action="store_true",
                        help="log no requests (same as --request-log-sample 0)")


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share of rows in [0, 1], got {text}")
    return value


def serve(args: argparse.Namespace, model_dir: Path, model_name: str, config=None) -> int:
    """Run the server until SIGINT/SIGTERM. ``config`` (default: loaded from ``args.config``)
    supplies the request log settings the options leave out. A port that cannot be bound
    raises ``OSError`` before anything is left running."""
    # pylint: disable=import-outside-toplevel
    from cartola.config import load_config
    from cartola.monitoring.request_log import RequestLogger
    from cartola.serving.app import ModelHTTPServer, create_app
    from cartola.serving.core import ModelRegistry
    from cartola.serving.metrics import ServingMetrics
    config = config or load_config(getattr(args, "config", None))
    metrics = ServingMetrics()
    registry = ModelRegistry(model_dir, model_name, args.poll_seconds, observer=metrics)
    registry.refresh()
    if registry.current is None:
        LOG.warning("no loadable version under %s yet; waiting for one", model_dir)
    request_log = None if getattr(args, "no_request_log", False) else (
        RequestLogger.from_config(config, model_name, getattr(args, "request_log_sample", None),
                                  getattr(args, "request_log_dir", None), metrics))
    app = create_app(registry, args.max_body_bytes, args.max_instances, metrics, request_log)
    try:
        server = ModelHTTPServer(app, args.host, args.port)
    except OSError:
        if request_log is not None:
            request_log.close()
        raise
    if request_log is not None:
        print(f"logging {request_log.sample:.0%} of scored rows to {request_log.folder}",
              flush=True)
    # uvicorn handles SIGINT/SIGTERM while it serves, then raises the signal again once it has
    # stopped; these handlers make that (and a signal just before it starts) a plain stop, so
    # the cleanup below runs instead of the default SIGTERM action killing the process.
    previous = {sig: signal.signal(sig, lambda *_: server.shutdown())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"serving model {model_name} from {model_dir}; listening on {server.url} "
          f"(try {server.url}/v1/models/{model_name})", flush=True)
    registry.start()
    try:
        server.serve_forever()
    finally:
        registry.stop()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m cartola.serving.server``: same options as ``cartola serve``."""
    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(prog="python -m cartola.serving.server",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(args.config)
    return serve(args, Path(args.model_dir) if args.model_dir else config.model_serving_dir,
                 args.model_name or config.model_name, config)


if __name__ == "__main__":
    sys.exit(main())
