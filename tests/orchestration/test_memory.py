"""Unit test of cartola.orchestration.memory: freed heap goes back to the OS."""
from __future__ import annotations

import ctypes.util

import psutil
import pytest

from cartola.orchestration import memory


def test_release_returns_freed_heap_to_the_os():
    if not ctypes.util.find_library("c") or not hasattr(ctypes.CDLL(None), "malloc_trim"):
        pytest.skip("not glibc: release() only collects garbage here")
    process = psutil.Process()
    memory.release()
    before = process.memory_info().rss
    # Many small objects: glibc serves them from its heap, not from mmap, and keeps the pages
    # after they are freed.
    blocks = [bytearray(1000) for _ in range(300_000)]
    grown = process.memory_info().rss - before
    del blocks
    kept = process.memory_info().rss - before
    assert memory.release() is True
    released = process.memory_info().rss - before
    assert grown > 250 * 2**20
    assert released < kept / 4, (grown >> 20, kept >> 20, released >> 20)
