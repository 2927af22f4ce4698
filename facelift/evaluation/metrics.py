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


#: Gaussian sigma (texels at 256x256) of `lowpass_change_ratio`: wider than skin detail (pores,
#: freckles), narrower than an occluder.
LOWPASS_SIGMA = 4.0


def lowpass(uv_map: np.ndarray, inside: np.ndarray, sigma: float = LOWPASS_SIGMA) -> np.ndarray:
    """The map's Gaussian-weighted (`sigma` texels) mean over the texels in `inside`, float64, of
    the map's shape ((R, R) or (R, R, C)): a normalised convolution, so texels outside do not pull
    it towards 0; 0 outside `inside`."""
    import cv2

    if not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of texels, got {sigma!r}")
    a = np.asarray(uv_map, np.float64)
    m = _region(inside, a.shape).astype(np.float64)
    k = int(2 * np.ceil(3 * sigma) + 1)
    blur = lambda x: cv2.GaussianBlur(x, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)  # noqa: E731
    w = blur(m)
    planes = a[..., None] if a.ndim == 2 else a
    out = np.stack([blur(planes[..., c] * m) for c in range(planes.shape[-1])], -1)
    out = np.where(w[..., None] > 1e-9, out / np.maximum(w, 1e-9)[..., None], 0.0) * m[..., None]
    return out[..., 0] if a.ndim == 2 else out


def lowpass_change_ratio(output_a: np.ndarray, output_b: np.ndarray, input_a: np.ndarray, input_b: np.ndarray,
                         mask: np.ndarray, inside: np.ndarray, sigma: float = LOWPASS_SIGMA) -> float:
    """`change_ratio` of the maps' low-pass (`lowpass` over `inside`) on `mask`.

    The plain ratio compares an output with the clean run's at every scale, so under an occluder
    it also charges the detail the occluder hides, which no output can know: a sharp albedo pays
    for its own detail there, a smooth one does not. Above `sigma` texels that detail is gone and
    what is left is the occluder's colour and shape copied into the output (1 when the output
    copies the input, 0 when it ignores it) and the error of guessing the hidden skin's colour."""
    lp = lambda x: lowpass(x, inside, sigma)  # noqa: E731
    return change_ratio(lp(output_a), lp(output_b), lp(input_a), lp(input_b), mask)


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


LUMA = np.array([0.299, 0.587, 0.114])
#: Gaussian sigma (texels) of the sharpness metric's high-pass filter.
SHARPNESS_SIGMA = 2.0


def luminance(uv_map: np.ndarray) -> np.ndarray:
    """(R, R) float64 Rec. 601 luminance of an (R, R, 3) map."""
    return np.asarray(uv_map, np.float64)[..., :3] @ LUMA


def _local_linear_fit(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """(R, R): at each texel, the value there of the plane fitted to `values` by least squares
    weighted with a Gaussian (`sigma` texels) times `mask` (first-order normalised convolution).
    Unlike a plain normalised blur it has no bias at the mask's border on linear ramps (the
    weights' centroid moves inwards there); where the fit is degenerate (a one-texel-wide strip)
    it falls back to the normalised blur."""
    import cv2

    R0, R1 = mask.shape
    m = mask.astype(np.float64)
    k = int(2 * np.ceil(3 * sigma) + 1)

    def blur(a):
        return cv2.GaussianBlur(a, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)

    yy, xx = np.mgrid[0:R0, 0:R1].astype(np.float64)
    f = values * m
    s0, sx, sy = blur(m), blur(m * xx), blur(m * yy)
    sxx, sxy, syy = blur(m * xx * xx), blur(m * xx * yy), blur(m * yy * yy)
    f0, fx, fy = blur(f), blur(f * xx), blur(f * yy)
    # moments about each texel (coordinates x - p_x, y - p_y)
    cx, cy = sx - xx * s0, sy - yy * s0
    cxx = sxx - 2 * xx * sx + xx * xx * s0
    cyy = syy - 2 * yy * sy + yy * yy * s0
    cxy = sxy - xx * sy - yy * sx + xx * yy * s0
    gx, gy = fx - xx * f0, fy - yy * f0
    A = np.stack([np.stack([s0, cx, cy], -1), np.stack([cx, cxx, cxy], -1), np.stack([cy, cxy, cyy], -1)], -2)
    b = np.stack([f0, gx, gy], -1)
    zero = f0 / np.maximum(s0, 1e-12)
    det = np.linalg.det(A)
    ok = (mask & (s0 > 1e-6) & (det > 1e-6 * np.maximum(s0, 1e-12) ** 3 * sigma ** 4))
    out = zero.copy()
    if ok.any():
        out[ok] = np.linalg.solve(A[ok], b[ok][..., None])[:, 0, 0]
    return out


def high_pass(uv_map: np.ndarray, mask: np.ndarray, sigma: float = SHARPNESS_SIGMA) -> np.ndarray:
    """(R, R) fine-scale detail of a map's luminance L on `mask`: (L - G) / G, with G the local
    Gaussian-weighted (`sigma` texels) mean of L over `mask`, as a plane fit
    (`_local_linear_fit`): texels outside the mask do not leak in, and smooth gradients leave no
    false detail at the mask's border. Relative to the local mean, so a map times a smooth field
    (an albedo = texture / smooth shading) has the same high pass. Zero outside `mask`."""
    m = _region(mask, np.shape(uv_map))
    lum = luminance(uv_map)
    low = _local_linear_fit(lum, m, sigma)
    out = (lum - low) / np.maximum(low, 0.02)
    return np.where(m, out, 0.0)


def sharpness(albedo: np.ndarray, texture: np.ndarray, mask: np.ndarray, sigma: float = SHARPNESS_SIGMA):
    """(ratio, correlation) of the albedo's fine-scale detail to the texture's on `mask`:
    std(high_pass(albedo)) / std(high_pass(texture)) (1 = as sharp as the photo, 0 = no detail;
    above 1 = more high-frequency content than the photo, e.g. noise), and the Pearson
    correlation of the two high passes (1 = the same detail, 0 = unrelated). NaN for an empty
    mask or a texture without detail."""
    m = _region(mask, np.shape(texture))
    if m.sum() < 2:
        return float("nan"), float("nan")
    ha, ht = high_pass(albedo, m, sigma)[m], high_pass(texture, m, sigma)[m]
    st, sa = float(ht.std()), float(ha.std())
    if st <= 1e-9:
        return float("nan"), float("nan")
    if sa <= 1e-9:  # no detail at all (round-off of a constant map)
        return 0.0, 0.0
    corr = float(np.mean((ha - ha.mean()) * (ht - ht.mean())) / (sa * st))
    return sa / st, corr


def fine_scale_std(values: np.ndarray, mask: np.ndarray, sigma: float = 3.0) -> float:
    """Standard deviation on `mask` of `values` (R, R) minus their Gaussian-blurred copy (`sigma`
    texels, normalised by the blurred mask so texels outside it do not pull the blur). NaN for
    fewer than 2 texels."""
    from scipy.ndimage import gaussian_filter

    m = _region(mask, np.shape(values)).astype(np.float64)
    if m.sum() < 2:
        return float("nan")
    v = np.asarray(values, np.float64) * m
    blurred = gaussian_filter(v, sigma, mode="nearest") / np.maximum(gaussian_filter(m, sigma, mode="nearest"), 1e-9)
    return float((v - blurred)[m > 0].std())


def gradient_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """E_grad of eq. 9: mean |grad a - grad b| (mean over channels) over the horizontally and
    vertically adjacent texel pairs that are both in `mask`. NaN without such a pair."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    m = _region(mask, a.shape[:2])
    total, count = 0.0, 0
    for axis in (0, 1):
        da, db = np.diff(a, axis=axis), np.diff(b, axis=axis)
        pair = (m[1:, :] & m[:-1, :]) if axis == 0 else (m[:, 1:] & m[:, :-1])
        total += float(np.abs(da - db).mean(-1)[pair].sum())
        count += int(pair.sum())
    return total / count if count else float("nan")


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
