"""A TF Serving-compatible REST server over the integer versions Pusher writes.

The command line of ``cartola serve`` and ``python -m cartola.serving.server``: loads the
served version (:mod:`cartola.serving.core`), serves the HTTP API of :mod:`cartola.serving.app`
under uvicorn in ``--workers`` processes (:mod:`cartola.serving.workers`; one per core by
default, each with the model loaded), and on SIGTERM or Ctrl-C stops gracefully: it drains,
running requests finish, the version watchers stop and the request logs close, so their open
files are renamed complete. Beyond loopback it refuses to start without a bearer token
(:mod:`cartola.serving.guards`).
This module imports FastAPI, uvicorn and TensorFlow only when serving starts, so
``cartola --help`` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

from cartola.serving.core import (DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES,
                                  DEFAULT_POLL_SECONDS, DEFAULT_PORT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cartola serve``; model folder and name default to the config."""
    parser.add_argument("--model-dir", help="folder of integer versions (default: "
                        "<serving_dir>/<model_name> from the config)")
    parser.add_argument("--model-name", help="name in the URL (default: config model_name)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; any other address "
                             "needs a token: $CARTOLA_SERVING_TOKEN or --token-file)")
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
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes, each with the model loaded (default: config "
                             "serving_workers; 0 = one per core)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="TensorFlow intra-op and inter-op threads per worker (default: "
                             "config serving_threads; 0 = cores // workers, at least 1)")
    parser.add_argument("--max-inflight", type=int, metavar="N",
                        help="requests running at once per worker before new ones get 503 "
                             "with Retry-After (default: config serving_max_inflight; 0 = "
                             "no limit)")
    parser.add_argument("--token-file", metavar="PATH",
                        help="file (mode 600) holding the bearer token clients must send, "
                             "when $CARTOLA_SERVING_TOKEN is unset (default: config "
                             "serving_token_file)")
    parser.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this "
                        "certificate (chain), passed to uvicorn")
    parser.add_argument("--ssl-keyfile", metavar="PEM", help="private key of --ssl-certfile")


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share of rows in [0, 1], got {text}")
    return value


class ServeError(ValueError):
    """A setting that stops the server from starting: one line for the user."""


def _choose(value, default):
    return default if value is None else value


def _ssl(args: argparse.Namespace) -> Dict[str, str]:
    cert, key = getattr(args, "ssl_certfile", None), getattr(args, "ssl_keyfile", None)
    if not cert and not key:
        return {}
    if not (cert and key):
        raise ServeError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for path in (cert, key):
        if not Path(path).is_file():
            raise ServeError(f"no such file: {path}")
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def serve(args: argparse.Namespace, model_dir: Path, model_name: str, config=None) -> int:
    """Run the server until SIGINT/SIGTERM. ``config`` (default: loaded from ``args.config``)
    supplies the settings the options leave out. A port that cannot be bound raises
    ``OSError``, a missing token or bad TLS files ``ServeError``, before anything runs."""
    # pylint: disable=import-outside-toplevel
    from cartola.config import load_config
    from cartola.serving.guards import TokenError, check_exposure, read_token
    from cartola.serving.workers import cores
    config = config or load_config(getattr(args, "config", None))
    token_file = _choose(getattr(args, "token_file", None), config.serving_token_file)
    try:
        token = read_token(token_file)
        check_exposure(args.host, token)
    except TokenError as err:
        raise ServeError(str(err)) from None
    ssl = _ssl(args)
    workers = _choose(getattr(args, "workers", None), config.serving_workers) or cores()
    max_inflight = _choose(getattr(args, "max_inflight", None), config.serving_max_inflight)
    threads = _choose(getattr(args, "threads", None), config.serving_threads)
    if min(workers, max_inflight, threads) < 0:
        raise ServeError("--workers, --threads and --max-inflight must be >= 0")
    return _serve_workers(args, model_dir, model_name, config, workers, {
        "token_file": token_file, "max_inflight": max_inflight, "ssl": ssl,
        "threads": threads or max(1, cores() // workers)})


def _request_log_settings(args: argparse.Namespace) -> Optional[dict]:
    if getattr(args, "no_request_log", False):
        return None
    return {"sample": getattr(args, "request_log_sample", None),
            "dir": getattr(args, "request_log_dir", None)}


def _serve_workers(args, model_dir: Path, model_name: str, config, workers: int,
                   guard: dict) -> int:
    # pylint: disable=import-outside-toplevel
    from cartola.serving.app import bind, uvicorn_options
    from cartola.serving.workers import serve_workers
    settings = {"config": getattr(args, "config", None), "model_dir": str(model_dir),
                "model_name": model_name, "poll_seconds": args.poll_seconds,
                "max_body_bytes": args.max_body_bytes, "max_instances": args.max_instances,
                "max_inflight": guard["max_inflight"], "token_file": guard["token_file"],
                "tf_threads": guard["threads"], "request_log": _request_log_settings(args)}
    if settings["request_log"] is not None:  # an unwritable folder: one line, before workers
        from cartola.serving.request_log import RequestLogger
        log = settings["request_log"]
        try:
            probe = RequestLogger.from_config(config, model_name, log["sample"], log["dir"])
        except OSError as err:
            raise ServeError(f"request log folder: {err}") from None
        if probe is not None:
            probe.close()
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"{'https' if guard['ssl'] else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
    return serve_workers(settings, sock, workers, uvicorn_options(guard["ssl"]),
                         f"serving model {model_name} from {model_dir} with {workers} workers "
                         f"({guard['threads']} TensorFlow thread"
                         f"{'s' if guard['threads'] > 1 else ''} each); "
                         f"listening on {url} (try {url}/v1/models/{model_name})")


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
    try:
        return serve(args, Path(args.model_dir) if args.model_dir else config.model_serving_dir,
                     args.model_name or config.model_name, config)
    except ServeError as err:
        print(f"cartola serve: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"cartola serve: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
