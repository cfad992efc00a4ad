"""Several uvicorn worker processes on one socket, each loading and hot-swapping the model.

One Python process scores on one core (the GIL: JSON, checks and tf.Example building hold it),
so ``cartola serve --workers N`` runs uvicorn's own supervisor: the socket is bound here, N
spawned workers accept from it, each builds the app with :func:`worker_app` (its own model
registry and watcher, request log file and load-shedding bound), and a worker that dies is
replaced. Every 100th answer of a worker closes its keep-alive connection, so the client
reconnects to whichever worker is free (:data:`REBALANCE_EVERY`). Each worker runs
TensorFlow on the threads it is given (by default its share of the cores). Settings reach
the workers as JSON in ``$CARTOLA_SERVING_WORKER`` (never the token: each worker reads
``$CARTOLA_SERVING_TOKEN`` or the token file itself); Prometheus values in a temporary
``$PROMETHEUS_MULTIPROC_DIR`` that any worker's ``/metrics`` sums
(:mod:`cartola.serving.metrics`).

On SIGTERM the supervisor closes its copy of the socket and signals the workers. Each one
drains before uvicorn's graceful shutdown: it stops accepting at once (new connections are
refused), and until :data:`DRAIN_SECONDS` have passed answers what arrives on its open
keep-alive connections with ``Connection: close`` (from 0.3 s on, once every worker has
stopped accepting), so a client never has a request on a connection the server then drops;
then running requests finish (10 s at most) and the request log closes.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Optional

import uvicorn
from uvicorn.supervisors import Multiprocess

from cartola.console import CONSOLE_LOG_ENV, quiet_console, terminal_for_children
from cartola.serving.metrics import MULTIPROC_ENV

LOG = logging.getLogger("cartola.serving")
SETTINGS_ENV = "CARTOLA_SERVING_WORKER"
DRAIN_SECONDS = 1.0
TF_THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Connection: close only once every worker has stopped accepting: a client that reconnected
# earlier would land in the shared backlog, which the kernel resets when the last listener
# closes.
_CLOSE_AFTER_SECONDS = 0.3
# With several workers, every REBALANCE_EVERY-th answer of a worker closes its connection.
# The kernel hands a new connection to whichever worker accepts first, and a keep-alive
# client then stays there: 16 connections opened at once can all land on one worker while
# the other idles. Reconnecting, a client lands on a worker that is free to accept, and a
# busy worker, answering more, lets go of more: the load evens out for one reconnect per 100
# requests (nginx's keepalive_requests does the same, at 1000).
REBALANCE_EVERY = 100


def cores() -> int:
    """Cores this process may run on (the default number of workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Worker:
    """ASGI wrapper of one worker's app: drains on SIGTERM (installed at lifespan startup,
    over uvicorn's own handler, which it calls once the drain is over), and runs ``on_stop``
    at lifespan shutdown, once uvicorn has let the running requests finish, so the request
    log closes with every answered row in it."""

    def __init__(self, app, on_stop, rebalance_every: int = 0):
        self.app = app
        self.on_stop = on_stop
        self.rebalance_every = rebalance_every  # 0: keep connections open
        self.answers = 0
        self.draining = False  # SIGTERM seen: no new connections
        self.closing = False  # answers carry Connection: close

    def _install_drain(self) -> None:
        previous = signal.getsignal(signal.SIGTERM)
        owner = getattr(previous, "__self__", None)  # uvicorn.Server.handle_exit
        if not isinstance(owner, uvicorn.Server):
            return  # not uvicorn's main-thread handler: leave signals alone
        loop = asyncio.get_running_loop()

        def stop_accepting():
            for listener in owner.servers:
                listener.close()

        def drain(sig, frame):
            if self.draining:
                previous(sig, frame)
                return
            loop.call_soon_threadsafe(stop_accepting)
            for delay, action, action_args in (
                    (_CLOSE_AFTER_SECONDS, setattr, (self, "closing", True)),
                    (DRAIN_SECONDS, previous, (sig, frame))):
                timer = threading.Timer(delay, action, action_args)
                timer.daemon = True
                timer.start()
            self.draining = True

        signal.signal(signal.SIGTERM, drain)

    def _close_now(self) -> bool:
        """Whether this answer closes its connection (draining, or the rebalancing turn)."""
        self.answers += 1
        return self.closing or (self.rebalance_every > 0
                                and self.answers % self.rebalance_every == 0)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            async def send_closing(message):
                if message["type"] == "http.response.start" and self._close_now():
                    message = dict(message, headers=[
                        *message.get("headers", []), (b"connection", b"close")])
                await send(message)

            await self.app(scope, receive, send_closing)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._install_drain()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.on_stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def worker_app():
    """The app of one worker process (uvicorn's factory), from ``$CARTOLA_SERVING_WORKER``."""
    # pylint: disable=import-outside-toplevel
    from cartola.config import load_config
    from cartola.serving.request_log import RequestLogger
    from cartola.serving.app import create_app
    from cartola.serving.core import ModelRegistry
    from cartola.serving.guards import read_token
    from cartola.serving.metrics import ServingMetrics
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")
    console = contextlib.ExitStack()
    if os.environ.get(CONSOLE_LOG_ENV):  # under `cartola serve`: libraries to its log file
        console.enter_context(quiet_console(Path(os.environ[CONSOLE_LOG_ENV])))
    settings = json.loads(os.environ[SETTINGS_ENV])
    config = load_config(settings["config"])
    metrics = ServingMetrics()
    registry = ModelRegistry(Path(settings["model_dir"]), settings["model_name"],
                             settings["poll_seconds"], observer=metrics)
    registry.refresh()
    log = settings["request_log"]
    request_log = None if log is None else RequestLogger.from_config(
        config, settings["model_name"], log["sample"], log["dir"], metrics)
    app = create_app(registry, settings["max_body_bytes"], settings["max_instances"], metrics,
                     request_log, token=read_token(settings["token_file"]),
                     max_inflight=settings["max_inflight"])
    registry.start()
    current = registry.current
    print(f"worker [{os.getpid()}] ready: "
          f"{f'version {current.version}' if current else 'no version yet'}", flush=True)

    def stop():
        registry.stop()
        if request_log is not None:
            request_log.close()
        console.close()

    return _Worker(app, stop, settings["rebalance_every"])


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, but a stop first closes this process's copy of the socket, so
    once the workers have closed theirs new connections are refused at once rather than
    queued in a backlog nobody accepts from."""

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def handle_term(self) -> None:
        self._close_sockets()
        super().handle_term()

    def handle_int(self) -> None:
        self._close_sockets()
        super().handle_int()


def serve_workers(settings: Dict[str, Any], sock, workers: int,
                  options: Dict[str, Any], announce: Optional[str] = None) -> int:
    """Run ``workers`` worker processes on the bound ``sock`` until SIGTERM/SIGINT.

    ``settings``: what :func:`worker_app` reads (model folder and name, limits, token file,
    request log); ``options``: uvicorn's (:func:`cartola.serving.app.uvicorn_options`).
    """
    metrics_dir = tempfile.mkdtemp(prefix="cartola-metrics-")
    saved = {name: os.environ.get(name) for name in (SETTINGS_ENV, MULTIPROC_ENV, *TF_THREAD_ENV)}
    os.environ[SETTINGS_ENV] = json.dumps(
        dict(settings, rebalance_every=REBALANCE_EVERY if workers > 1 else 0))
    os.environ[MULTIPROC_ENV] = metrics_dir
    # The spawned workers' TensorFlow reads these when its runtime starts: N workers of
    # cores // N threads each, rather than N pools of every core contending for them.
    for name in TF_THREAD_ENV:
        os.environ[name] = str(settings["tf_threads"])
    config = uvicorn.Config("cartola.serving.workers:worker_app", factory=True,
                            workers=workers, **dict(options, lifespan="on"))
    try:
        supervisor = _Supervisor(config, sockets=[sock])
        if announce:
            print(announce, flush=True)
        with terminal_for_children():  # each worker splits its own output (the quiet console)
            supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return 0
