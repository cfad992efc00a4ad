"""Import TFX once in a long-lived parent process so that every task forked from it starts warm.

Airflow 3 runs a task in a process forked from a long-lived parent: LocalExecutor workers are
forked from the scheduler when the executor starts, the Celery prefork pool from the Celery
worker's main process, and in both the task SDK's supervisor then forks the task itself
(``os.fork`` in ``ActivitySubprocess.start``, no exec on Linux). Importing TensorFlow, TFX,
TFMA, TFT and TFDV there (~25-40 s) makes that cost once per worker instead of once per task.

Forking after these imports is safe only while the parent never *runs* TensorFlow or gRPC:
:func:`preload` checks that no TensorFlow eager context exists, and :func:`fork_safety`
reports the parent's native threads. After the imports there are three besides the main
thread: OpenBLAS's worker pool (numpy/scipy) and jemalloc's background thread (pyarrow);
both libraries re-initialise them in a forked child through ``pthread_atfork``. gRPC starts
threads only with a channel, which the imports do not open; ``GRPC_ENABLE_FORK_SUPPORT`` is
set to false so its fork handlers stay out of the way.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from typing import Dict, List

log = logging.getLogger(__name__)

# Named native threads the imports are known to leave (see the module docstring).
KNOWN_THREADS = ("jemalloc_bg_thd",)
_DONE: Dict[str, object] = {}


def enabled() -> bool:
    """The config's ``preload_tfx`` (``CARTOLA_PRELOAD_TFX=false`` turns it off)."""
    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    return load_config().preload_tfx


def native_threads() -> List[str]:
    """Names of this process's OS threads (Python's and native libraries')."""
    names = []
    for tid in sorted(os.listdir("/proc/self/task")):
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as handle:
                names.append(handle.read().strip())
        except OSError:
            continue  # the thread ended meanwhile
    return names


def tensorflow_runtime_started() -> bool:
    """True once TensorFlow created its eager context (its thread pools and devices)."""
    module = sys.modules.get("tensorflow.python.eager.context")
    return module is not None and module.context_safe() is not None


def fork_safety() -> Dict[str, object]:
    """What a fork from this process would inherit: TF runtime, threads, gRPC channels."""
    threads = native_threads()
    # Native pools (OpenBLAS) carry the process's name (threads[0] is the main thread).
    unknown = [name for name in threads[1:] if name not in (threads[0], *KNOWN_THREADS)]
    return {"tensorflow_runtime": tensorflow_runtime_started(),
            "python_threads": [t.name for t in threading.enumerate()],
            "native_threads": threads, "unexplained_threads": unknown,
            "safe": not tensorflow_runtime_started() and not unknown}


def preload() -> Dict[str, object]:
    """Import what every pipeline node needs; idempotent. Returns the fork-safety report.

    Raises RuntimeError if the imports started TensorFlow's runtime or Python threads: a
    fork would then copy locks held by threads that do not exist in the child. (Threads the
    parent had before, such as a scheduler's own, are the parent's business.)
    """
    if _DONE:
        return dict(_DONE)
    threads_before = set(threading.enumerate())
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    started = time.monotonic()
    with warnings.catch_warnings():
        # Google's client libraries warn at import that Python 3.10 is old; TFX 1.16 needs it.
        warnings.filterwarnings("ignore", category=FutureWarning)
        # pylint: disable=import-outside-toplevel,unused-import
        import tensorflow_data_validation  # noqa: F401
        import tensorflow_model_analysis  # noqa: F401
        import tensorflow_transform  # noqa: F401
        import tfx.components  # noqa: F401
        from tfx.orchestration.portable import launcher  # noqa: F401

        import cartola.pipeline.definition  # noqa: F401
        from cartola.orchestration import node  # noqa: F401
    report = fork_safety()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["new_python_threads"] = [t.name for t in set(threading.enumerate()) - threads_before]
    if report["tensorflow_runtime"] or report["new_python_threads"]:
        raise RuntimeError(f"TFX preload is not fork-safe: {report}")
    if report["unexplained_threads"]:
        log.warning("TFX preload: threads not known to be fork-safe: %s",
                    report["unexplained_threads"])
    log.info("TFX preloaded in %.1f s (pid %d); fork safety: %s", report["seconds"],
             os.getpid(), report)
    _DONE.update(report)
    return report


def preload_if_enabled() -> None:
    """:func:`preload` unless the config turns it off (``preload_tfx``)."""
    if enabled():
        preload()
