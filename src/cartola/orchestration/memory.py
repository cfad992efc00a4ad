"""Memory an in-process run hands back to the OS as each component finishes."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Optional

_LIBC: Optional[ctypes.CDLL] = None


def _libc() -> Optional[ctypes.CDLL]:
    global _LIBC  # pylint: disable=global-statement
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else None
        except OSError:
            _LIBC = None
    return _LIBC


def release() -> bool:
    """Collect garbage, then ask glibc to return the free heap pages to the OS.

    ``cartola run`` runs every component in one process. What a component frees (Transform's
    in-process Beam stages, the Trainer's candidate models) stays with glibc's arenas, which
    TensorFlow's threads make many of, and counts in the process's RSS beside the next
    component's Beam workers. ``malloc_trim`` (glibc only; elsewhere this only collects) gives
    those pages back. Returns whether the C library trimmed."""
    gc.collect()
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return bool(libc.malloc_trim(0))
