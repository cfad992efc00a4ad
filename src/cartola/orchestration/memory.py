"""Memory an in-process run hands back to the OS as each component finishes."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from typing import Optional


@functools.lru_cache(maxsize=None)
def _malloc_trim() -> Optional[ctypes._CFuncPtr]:  # pylint: disable=protected-access
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
    return trim


def release() -> bool:
    """Collect garbage, then ask glibc to return the free heap pages to the OS.

    ``cartola run`` runs every component in one process. What a component frees (Transform's
    in-process Beam stages, the Trainer's candidate models) stays with glibc's arenas, which
    TensorFlow's threads make many of, and counts in the process's RSS beside the next
    component's Beam workers. ``malloc_trim`` (glibc only; elsewhere this only collects) gives
    those pages back. Returns whether the C library trimmed."""
    gc.collect()
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))
