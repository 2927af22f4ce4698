"""facelift._malloc: freed U-Net buffers stay mapped instead of faulting back in on every call."""

import os
import subprocess
import sys
import textwrap

import pytest

from facelift import _malloc

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc.platform.libc_ver()[0] != "glibc",
                                 reason="mallopt is glibc's")

# the page faults of allocating, filling and freeing 16 MiB (a FAN feature map's size) with glibc's
# own malloc, counted on the second time, after `keep_freed_memory()` (or not, with the variable at 0).
# (Not a torch tensor: torch's posix_memalign asks for a little more than a freed block of the same
# size holds, so a test on tensors depends on what else the heap holds.)
FAULTS = textwrap.dedent("""
    import ctypes, resource
    from facelift._malloc import keep_freed_memory
    print(keep_freed_memory())
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    SIZE = 16 << 20

    def use():
        p = libc.malloc(SIZE)
        ctypes.memset(p, 1, SIZE)
        libc.free(p)

    use()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    use()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(tuning: str) -> tuple[str, int]:
    env = {**os.environ, _malloc.ENV_VAR: tuning}
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    return out[0], int(out[1])


@linux_glibc
def test_freed_buffers_do_not_fault_again():
    applied, faults = _faults("1")
    assert applied == "True"
    assert faults < 100, faults  # 4,096 pages of 4 KiB when they were handed back to the kernel
    applied, faults = _faults("0")
    assert applied == "False"
    assert faults > 2000, faults  # glibc's default: the first block was mmap'd and unmapped


def test_opt_out_and_other_platforms(monkeypatch):
    monkeypatch.setattr(_malloc, "_applied", None)
    monkeypatch.setenv(_malloc.ENV_VAR, "0")
    assert _malloc.keep_freed_memory() is False
    assert _malloc._applied is None  # not remembered: the variable may be unset later
    monkeypatch.delenv(_malloc.ENV_VAR)
    monkeypatch.setattr(_malloc.sys, "platform", "darwin")
    assert _malloc.keep_freed_memory() is False


@linux_glibc
def test_applied_once(monkeypatch):
    calls = []
    monkeypatch.setattr(_malloc, "_applied", None)
    monkeypatch.delenv(_malloc.ENV_VAR, raising=False)
    real = _malloc.ctypes.CDLL

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_malloc.ctypes, "CDLL", counting)
    _malloc.glibc.cache_clear()
    assert _malloc.keep_freed_memory() is True
    assert _malloc.keep_freed_memory() is True
    assert len(calls) == 1


def test_cpu_pipeline_applies_it(monkeypatch):
    import facelift.pipeline as pipeline

    seen = []
    monkeypatch.setattr(pipeline, "keep_freed_memory", lambda: seen.append(True) or True)
    from facelift.face_model import FaceModel

    pipe = pipeline.FaceLift(FaceModel.load(pipeline.CHECKPOINTS_DIR / "face_model.safetensors"))
    try:
        assert seen == [True]
    finally:
        pipe.close()
