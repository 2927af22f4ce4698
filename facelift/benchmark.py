"""Speed and memory figures for the pipeline on the current machine (prints, never asserts)."""

from __future__ import annotations

import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

STAGES = ("decode", "landmarks", "fit", "unwrap", "lighting", "fan", "drn", "mesh")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "astronaut.png"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _stats(values: list[float]) -> dict:
    arr = np.asarray(values, float)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
            "min": float(arr.min()), "n": int(arr.size)}


def run_benchmark(image=None, *, size: int = 512, repeat: int = 20, weights=None, warmup: int = 2) -> dict:
    import torch
    from PIL import Image

    from . import __version__
    from .pipeline import FaceLift

    src = Image.open(image or EXAMPLE).convert("RGB").resize((size, size), Image.BICUBIC)
    photo = np.asarray(src)
    t = time.perf_counter()
    fl = FaceLift.from_pretrained(weights)
    load_ms = (time.perf_counter() - t) * 1000
    for _ in range(warmup):
        rec = fl.reconstruct(photo)
        rec.render(size=512)

    per_stage = {s: [] for s in STAGES}
    totals, reconstruct_ms, render_ms, relight_ms, export_ms = [], [], [], [], []
    for i in range(repeat):
        t = time.perf_counter()
        rec = fl.reconstruct(photo)
        reconstruct_ms.append((time.perf_counter() - t) * 1000)
        for s in STAGES:
            per_stage[s].append(rec.timings.get(s, 0.0))
        totals.append(sum(rec.timings.get(s, 0.0) for s in STAGES if s != "decode"))
        t = time.perf_counter()
        rec.render(yaw=(i * 17) % 90 - 45, pitch=10, size=512)
        render_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        rec.render(light=((i * 31) % 180 - 90, 20), size=512)
        relight_ms.append((time.perf_counter() - t) * 1000)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(min(repeat, 3)):
            t = time.perf_counter()
            rec.export(Path(tmp) / f"r{i}")
            export_ms.append((time.perf_counter() - t) * 1000)
    fl.close()
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "facelift": __version__},
        "image_size": size,
        "repeat": repeat,
        "model_load_ms": load_ms,
        "stages_ms": {s: _stats(v) for s, v in per_stage.items()},
        "landmarks_to_mesh_ms": _stats(totals),
        "reconstruct_call_ms": _stats(reconstruct_ms),
        "render_512_ms": _stats(render_ms),
        "relight_512_ms": _stats(relight_ms),
        "export_ms": _stats(export_ms),
        "peak_rss_mb": peak_rss_mb(),
    }


def format_table(result: dict) -> str:
    rows = [("stage", "median ms", "p90 ms")]
    for s, st in result["stages_ms"].items():
        rows.append((s, f"{st['median']:.1f}", f"{st['p90']:.1f}"))
    for key, label in (("landmarks_to_mesh_ms", "landmarks..mesh (sum)"), ("reconstruct_call_ms", "reconstruct() call"),
                       ("render_512_ms", "re-render 512 (view)"), ("relight_512_ms", "re-render 512 (light)"),
                       ("export_ms", "export")):
        st = result[key]
        rows.append((label, f"{st['median']:.1f}", f"{st['p90']:.1f}"))
    w = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{w}}  {r[1]:>10}  {r[2]:>8}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"model load {result['model_load_ms']:.0f} ms; peak RSS {result['peak_rss_mb']:.0f} MB; "
                 f"{result['repeat']} runs on a {result['image_size']}x{result['image_size']} photo; "
                 f"torch threads {result['machine']['cpu_threads']}")
    return "\n".join(lines)
