"""BLAS on one thread around the pipeline's numpy work.

numpy's OpenBLAS keeps a worker thread per core. After a call it ran on two threads (any matmul
over a few thousand rows, e.g. a UV map's irradiance), that worker busy-waits for its next job for
about a tenth of a second; on two cores it then takes one from torch's two threads, and the U-Net
that runs next takes up to twice as long (measured: the FAN's p90 100 ms against 54 ms with one
BLAS thread). The pipeline's own matrices are small, so one thread loses nothing.
"""

from __future__ import annotations

import functools
import sys

from threadpoolctl import ThreadpoolController

_controller: tuple[int, ThreadpoolController | None] = (-1, None)


def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries loaded now (rescanned, ~0.6 ms, only after new imports: a library loaded
    after the first scan, e.g. scipy's own OpenBLAS, would otherwise keep its threads)."""
    global _controller
    n = len(sys.modules)
    if _controller[0] != n:
        _controller = (n, ThreadpoolController())
    return _controller[1]


def one_blas_thread(fn):
    """Run `fn` with BLAS on one thread (the threads as they were afterwards): the fits solve many
    small systems (80 x 80), for which a second BLAS thread only adds synchronisation, and the
    pipeline leaves no BLAS worker spinning beside its networks (module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper
