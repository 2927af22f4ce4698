"""glibc's malloc: the process's library (`glibc`, `mallopt`; the app's arena limit and trims use them
too) and the thresholds for CPU inference (`keep_freed_memory`).

glibc serves a large allocation (from 128 KiB, adjusted at run time up to 32 MiB) with its own
mmap and returns heap tops over twice that to the kernel, so the U-Nets' temporary feature maps
(up to 16 MiB each, freed after every layer) come back as fresh pages on every call: about
15,000 page faults per `reconstruct()`. Serving allocations below MMAP_THRESHOLD from the heap and
keeping up to TRIM_THRESHOLD of free heap makes the pages stay mapped (under 200 faults per call,
~50 ms less on 2 cores, peak memory unchanged; docs/BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
#: Set to "0" to leave the process's malloc settings as they are.
ENV_VAR = "FACELIFT_MALLOC_TUNING"

_applied: bool | None = None


@functools.lru_cache(maxsize=1)
def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc on Linux (for mallopt, malloc_trim), else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def mallopt(param: int, value: int) -> bool:
    """glibc's mallopt(param, value); False where there is no glibc or it refuses the value."""
    lib = glibc()
    if lib is None or not hasattr(lib, "mallopt"):
        return False
    lib.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.mallopt.restype = ctypes.c_int
    return lib.mallopt(int(param), int(value)) == 1


def keep_freed_memory() -> bool:
    """Apply the settings once per process (glibc on Linux only); True when they are in effect.

    A process-wide change, made when a CPU pipeline is created; ``FACELIFT_MALLOC_TUNING=0``
    turns it off."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENV_VAR, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False  # not cached: the variable may be unset later in the same process
    # both: setting either one alone switches off glibc's dynamic thresholds and makes it worse
    _applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return _applied
