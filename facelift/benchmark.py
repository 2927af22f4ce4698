"""Speed and memory figures for the pipeline on the current machine (prints, never asserts).

Per stage (median and p90 over `repeat` runs on one photo): image decode, landmarks, fit,
unwrap, FAN, DRN, lighting, dense mesh (from `Reconstruction.timings` of `repeat` `reconstruct()`
calls in a row), render (one 512x512 re-render) and export (`Reconstruction.export`: GLB, OBJ,
maps, preview, params), from a second loop of `repeat` reconstruct + export + two re-renders. End
to end is decode -> export, what `facelift reconstruct` does per photo; `reconstruct()` between
exports is the call's time in that loop (the export's files, still being written back to disk,
take CPU from the networks' two threads: on a 2-core VM 3-45 ms more). Batch throughput runs
`reconstruct` + `export` over `batch` photos in a row (files, decoded each time) and reports
photos per second. Also: model load time and the process's peak RSS, and the *floor*: the
median of landmarks + FAN + DRN per run (the work no pipeline can skip), against which
`reconstruct()` less decode is compared (`floor_ratio`).
"""

from __future__ import annotations

import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PIPELINE_STAGES = ("decode", "landmarks", "fit", "unwrap", "fan", "drn", "lighting", "mesh")
FLOOR_STAGES = ("landmarks", "fan", "drn")
STAGES = PIPELINE_STAGES + ("render", "export")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "astronaut.png"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _stats(values: list[float]) -> dict:
    arr = np.asarray(values, float)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
            "min": float(arr.min()), "n": int(arr.size)}


def run_benchmark(image=None, *, size: int = 512, repeat: int = 20, weights=None, warmup: int = 2,
                  batch: int = 8, render_size: int = 512) -> dict:
    import torch
    from PIL import Image

    from ._version import __version__
    from .pipeline import FaceLift

    repeat, batch = max(1, int(repeat)), max(0, int(batch))
    src = Image.open(image or EXAMPLE).convert("RGB").resize((size, size), Image.BICUBIC)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photo_path = tmp / "photo.png"
        src.save(photo_path)  # decoded from a file every run, as `facelift reconstruct` does
        t = time.perf_counter()
        fl = FaceLift.from_pretrained(weights)
        load_ms = (time.perf_counter() - t) * 1000
        try:
            for _ in range(warmup):
                rec = fl.reconstruct(photo_path)
                rec.render(size=render_size)
            per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
            reconstruct_ms, floor_ms, less_decode_ms = [], [], []
            for _ in range(repeat):  # reconstruct() alone, call after call
                t0 = time.perf_counter()
                rec = fl.reconstruct(photo_path)
                reconstruct_ms.append((time.perf_counter() - t0) * 1000)
                for s in PIPELINE_STAGES:
                    per_stage[s].append(rec.timings.get(s, 0.0))
                floor_ms.append(sum(rec.timings.get(s, 0.0) for s in FLOOR_STAGES))
                less_decode_ms.append(rec.timings["total"] - rec.timings.get("decode", 0.0))
            end_to_end, between_exports_ms, relight_ms = [], [], []
            for i in range(repeat):  # what `facelift reconstruct` does per photo, then two re-renders
                t0 = time.perf_counter()
                rec = fl.reconstruct(photo_path)
                t1 = time.perf_counter()
                rec.export(tmp / "out", render_size=render_size)
                t2 = time.perf_counter()
                between_exports_ms.append((t1 - t0) * 1000)
                end_to_end.append((t2 - t0) * 1000)
                per_stage["export"].append((t2 - t1) * 1000)
                t = time.perf_counter()
                rec.render(yaw=(i * 17) % 90 - 45, pitch=10, size=render_size)
                per_stage["render"].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                rec.render(light=((i * 31) % 180 - 90, 20), size=render_size)
                relight_ms.append((time.perf_counter() - t) * 1000)
            throughput = None
            if batch:
                paths = []
                for k in range(batch):  # distinct files (slightly shifted crops) so nothing is cached
                    p = tmp / f"batch_{k}.png"
                    src.transform(src.size, Image.AFFINE, (1, 0, k % 5 - 2, 0, 1, k // 5 - 1),
                                  resample=Image.BILINEAR).save(p)
                    paths.append(p)
                t = time.perf_counter()
                for k, p in enumerate(paths):
                    fl.reconstruct(p).export(tmp / f"b{k}", render_size=render_size)
                wall = time.perf_counter() - t
                throughput = {"photos": batch, "seconds": wall, "photos_per_s": batch / wall}
        finally:
            fl.close()
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "facelift": __version__},
        "image_size": size,
        "render_size": render_size,
        "repeat": repeat,
        "model_load_ms": load_ms,
        "stages_ms": {s: _stats(v) for s, v in per_stage.items()},
        "end_to_end_ms": _stats(end_to_end),
        "reconstruct_call_ms": _stats(reconstruct_ms),
        "reconstruct_between_exports_ms": _stats(between_exports_ms),
        "reconstruct_less_decode_ms": _stats(less_decode_ms),
        "floor_ms": _stats(floor_ms),
        "floor_ratio": float(np.median(less_decode_ms) / max(np.median(floor_ms), 1e-9)),
        "relight_ms": _stats(relight_ms),
        "batch_throughput": throughput,
        "peak_rss_mb": peak_rss_mb(),
    }


_SUMMARY_ROWS = (("reconstruct_call_ms", "`reconstruct()` call"),
                 ("reconstruct_between_exports_ms", "`reconstruct()` between exports"),
                 ("relight_ms", "re-render with a new light"),
                 ("end_to_end_ms", "**end to end** (decode..export)"))


def format_table(result: dict) -> str:
    rows = [("stage", "median ms", "p90 ms")]
    for s, st in result["stages_ms"].items():
        rows.append((s, f"{st['median']:.1f}", f"{st['p90']:.1f}"))
    for key, label in _SUMMARY_ROWS:
        st = result[key]
        rows.append((label.replace("`", "").replace("**", ""), f"{st['median']:.1f}", f"{st['p90']:.1f}"))
    w = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{w}}  {r[1]:>10}  {r[2]:>8}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - len(_SUMMARY_ROWS), "-" * len(lines[0]))
    tp = result.get("batch_throughput")
    if tp:
        lines.append(f"batch throughput: {tp['photos_per_s']:.2f} photos/s ({tp['photos']} photos, reconstruct + "
                     f"export, {tp['seconds']:.1f} s)")
    lines.append(f"reconstruct() less decode {result['reconstruct_less_decode_ms']['median']:.1f} ms median = "
                 f"{result['floor_ratio']:.2f} x the floor (landmarks + FAN + DRN, "
                 f"{result['floor_ms']['median']:.1f} ms median)")
    lines.append(f"model load {result['model_load_ms']:.0f} ms; peak RSS {result['peak_rss_mb']:.0f} MB; "
                 f"{result['repeat']} runs on a {result['image_size']}x{result['image_size']} photo, "
                 f"renders {result['render_size']}x{result['render_size']}; "
                 f"torch threads {result['machine']['cpu_threads']}")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    rows = ["| stage | median ms | p90 ms |", "|---|---:|---:|"]
    for s, st in result["stages_ms"].items():
        rows.append(f"| {s} | {st['median']:.1f} | {st['p90']:.1f} |")
    for key, label in _SUMMARY_ROWS:
        st = result[key]
        rows.append(f"| {label} | {st['median']:.1f} | {st['p90']:.1f} |")
    tp = result.get("batch_throughput")
    extra = []
    if tp:
        extra.append(f"- batch throughput: **{tp['photos_per_s']:.2f} photos/s** ({tp['photos']} photos, "
                     f"reconstruct + export in a row, {tp['seconds']:.1f} s)")
    extra.append(f"- `reconstruct()` less decode: {result['reconstruct_less_decode_ms']['median']:.1f} ms median, "
                 f"**{result['floor_ratio']:.2f} x the floor** (landmarks + FAN + DRN: "
                 f"{result['floor_ms']['median']:.1f} ms median)")
    extra.append(f"- model load: {result['model_load_ms']:.0f} ms")
    extra.append(f"- peak RSS: {result['peak_rss_mb']:.0f} MB")
    m = result["machine"]
    extra.append(f"- {result['repeat']} runs on a {result['image_size']}x{result['image_size']} photo; "
                 f"{m['platform']}, {m['processor']}, torch {m['torch']} with {m['cpu_threads']} threads, "
                 f"Python {m['python']}, facelift {m['facelift']}")
    return "\n".join(rows + [""] + extra)
