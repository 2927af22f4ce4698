"""The server's memory: glibc's malloc arenas limited, freed heap memory handed back after heavy jobs."""

from __future__ import annotations

import functools
import os
import threading
import time

from facelift._malloc import M_ARENA_MAX, glibc, mallopt


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Like MALLOC_ARENA_MAX=2 (which, when set, wins): glibc gives threads that allocate at
    once their own malloc arena, up to 8 per core, and with gradio's worker threads the memory
    freed by each reconstruction's large arrays stays scattered over them: the server's RSS
    crept up by 170 MB over 100 reconstructions in the load test, 50 MB with 2 arenas, at the
    same latency. Call before the worker threads start; True if applied."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return mallopt(M_ARENA_MAX, arenas)


class MemoryReleaser(threading.Thread):
    """Hands the heap memory freed by heavy jobs back to the system (glibc's malloc_trim) a
    moment after they finish, off the request path. glibc keeps freed chunks in its arenas (its
    mmap threshold rises to 32 MB after the first large free, so later large arrays come from
    the heap) and returns only the top of each heap by itself: after 6 concurrent 49-megapixel
    photos and 9 normal requests the server stayed 710 MB above its warm baseline, 150 MB with
    this (tests/memory_burst.py)."""

    def __init__(self, delay_s: float = 1.0):
        super().__init__(name="facelift-memory-release", daemon=True)
        self.delay_s = delay_s
        self._due = threading.Event()
        self.trims = 0
        libc = glibc()
        self._trim = getattr(libc, "malloc_trim", None)

    def soon(self) -> None:
        """A heavy job finished (gradio is still encoding its outputs: hence the delay)."""
        if self._trim is not None:
            self._due.set()

    def run(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.delay_s)  # jobs finishing meanwhile share this trim
            self._due.clear()
            self._trim(0)
            self.trims += 1


MEMORY = MemoryReleaser()


def releases_memory(handler):
    """A heavy handler after which freed memory is handed back to the system (`MemoryReleaser`),
    whether it succeeded or not."""
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        finally:
            MEMORY.soon()
    return wrapper
