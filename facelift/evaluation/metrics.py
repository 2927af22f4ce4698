"""Evaluation metrics: pure functions on numpy arrays (UV maps are (R, R, C), masks (R, R) bool).

Every function returns a Python float (NaN where the region is empty or the reference is
zero) and has a known-answer test in tests/evaluation/test_metrics.py.
"""

from __future__ import annotations

import numpy as np


def _region(mask, shape) -> np.ndarray:
    m = np.asarray(mask, bool)
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"mask of shape {m.shape} does not match maps of shape {tuple(shape)}")
    return m


def masked_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference over the texels in `mask` and over channels (0..1 maps -> 0..1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    m = _region(mask, a.shape)
    if not m.any():
        return float("nan")
    return float(np.abs(a[m] - b[m]).mean())


def change_ratio(output_a: np.ndarray, output_b: np.ndarray, input_a: np.ndarray, input_b: np.ndarray,
                 mask: np.ndarray) -> float:
    """mean |output_a - output_b| / mean |input_a - input_b| over `mask`.

    How much of a change of the input (an occluder, a new light) leaks into the output: 0 when
    the output ignores it, 1 when the output copies the input. NaN if the input did not change.
    """
    den = masked_l1(input_a, input_b, mask)
    if not np.isfinite(den) or den <= 0:
        return float("nan")
    return masked_l1(output_a, output_b, mask) / den


def mirror_error(uv_map: np.ndarray, hidden: np.ndarray) -> float:
    """mean |map(p) - map(mirror p)| over texels p in `hidden` (mirror p = same row, column R-1-j).

    With `hidden` the self-occluded texels whose mirror is seen, this compares a completed map's
    unseen half with the seen half mirrored (docs/EVALUATION.md, completion).
    """
    m = np.asarray(uv_map, np.float64)
    return masked_l1(m, m[:, ::-1], hidden)


def self_occluded(visible: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """(R, R) bool: texels inside the layout, not seen, whose mirror texel is seen."""
    vis = np.asarray(visible, bool)
    ins = np.asarray(inside, bool)
    return ins & ~vis & vis[:, ::-1] & ins[:, ::-1]


def nme(pred: np.ndarray, gt: np.ndarray, points: np.ndarray | slice | None = None) -> float:
    """Normalised mean error in percent: mean ||pred - gt|| / sqrt(w h) * 100, where w x h is the
    bounding box of all ground-truth points; `points` selects which points are averaged."""
    p, g = np.asarray(pred, np.float64)[:, :2], np.asarray(gt, np.float64)[:, :2]
    if p.shape != g.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {g.shape}")
    w, h = np.ptp(g[:, 0]), np.ptp(g[:, 1])
    norm = float(np.sqrt(w * h))
    if norm <= 0:
        return float("nan")
    d = np.linalg.norm(p - g, axis=1)
    if points is not None:
        d = d[points]
    return float(d.mean() / norm * 100.0)


def summarise(values) -> dict:
    """{"mean", "median", "count"} of the finite values (None and NaN are skipped)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if arr.size == 0:
        return {"mean": None, "median": None, "count": 0}
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "count": int(arr.size)}


class LPIPSMetric:
    """LPIPS (VGG-16, v0.1) between two masked maps; texels outside the mask are zero in both.

    `weights`: safetensors file (default: FACELIFT_LPIPS_WEIGHTS, else
    ``../shared/weights/vgg16_imagenet_lpips.safetensors`` next to the repository).
    """

    def __init__(self, weights=None):
        from ..models.vgg import LPIPS

        self.path = str(weights or default_lpips_weights())
        self.net = LPIPS.from_safetensors(self.path).eval()

    def __call__(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
        import torch

        m = _region(mask, np.shape(a))
        if not m.any():
            return float("nan")
        x = np.where(m[..., None], np.clip(a, 0, 1), 0).astype(np.float32)
        y = np.where(m[..., None], np.clip(b, 0, 1), 0).astype(np.float32)
        to = lambda z: torch.from_numpy(np.ascontiguousarray(z.transpose(2, 0, 1)))[None]  # noqa: E731
        with torch.inference_mode():
            return float(self.net(to(x), to(y))[0])


def default_lpips_weights():
    import os
    from pathlib import Path

    env = os.environ.get("FACELIFT_LPIPS_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "vgg16_imagenet_lpips.safetensors"
