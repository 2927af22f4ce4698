"""glibc malloc settings for CPU inference.

glibc serves a large allocation (from 128 KiB, adjusted at run time up to 32 MiB) with its own
mmap and returns heap tops over twice that to the kernel, so the U-Nets' temporary feature maps
(up to 16 MiB each, freed after every layer) come back as fresh pages on every call: about
15,000 page faults per `reconstruct()`. Serving allocations below MMAP_THRESHOLD from the heap and
keeping up to TRIM_THRESHOLD of free heap makes the pages stay mapped (under 200 faults per call,
~50 ms less on 2 cores, peak memory unchanged; docs/BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
#: Set to "0" to leave the process's malloc settings as they are.
ENV_VAR = "FACELIFT_MALLOC_TUNING"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process (glibc on Linux only); True when they are in effect.

    A process-wide change, made when a CPU pipeline is created; ``FACELIFT_MALLOC_TUNING=0``
    turns it off."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENV_VAR, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False  # not cached: the variable may be unset later in the same process
    if platform.libc_ver()[0] != "glibc":
        _applied = False
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _applied = False
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # both: setting either one alone switches off glibc's dynamic thresholds and makes it worse
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
