"""Low-frequency albedo (eq. 2) and SH lighting (eq. 3) by least squares.

Used when a bundle ships no B-Net, and as the B-Net's closed-form reference: alternate
the SH estimate given the albedo with the PCA coefficients given the shading; the
ridge term is the prior w_a * ||p_a||^2 of eq. 4.
"""

from __future__ import annotations

import numpy as np
import torch

from .face_model import FaceModel
from .shading import estimate_sh, irradiance


def resize_maps(maps_chw: np.ndarray, resolution: int) -> np.ndarray:
    """(..., C, A, A) -> (..., R, R, C) by bilinear resampling."""
    t = torch.from_numpy(np.ascontiguousarray(maps_chw, dtype=np.float32))
    lead = t.shape[:-3]
    t = t.reshape(-1, *t.shape[-3:])
    if t.shape[-1] != resolution:
        t = torch.nn.functional.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return t.permute(0, 2, 3, 1).reshape(*lead, resolution, resolution, t.shape[1]).numpy()


def sample_maps(maps_chw: np.ndarray, resolution: int, flat_index: np.ndarray) -> np.ndarray:
    """``resize_maps(maps_chw, resolution)`` at the flat texel indices only: (..., N, C).

    The same bilinear weights as ``torch.nn.functional.interpolate(align_corners=False)``,
    gathered for N texels instead of resampling the whole stack.
    """
    maps = np.asarray(maps_chw, dtype=np.float32)
    out = _sample_texels(maps, resolution, flat_index)  # (N, L)
    return np.moveaxis(out.T.reshape(*maps.shape[:-2], -1), -2, -1)


def _sample_texels(maps: np.ndarray, resolution: int, flat_index: np.ndarray) -> np.ndarray:
    """(..., A, A) maps at N output texels as (N, L), L = the product of the leading axes."""
    A = maps.shape[-1]
    texels = np.asarray(maps, np.float32).reshape(-1, A * A).T  # (A*A, L): one row per source texel
    rows, cols = np.divmod(np.asarray(flat_index), resolution)

    def taps(i):
        x = np.maximum((i + 0.5) * (A / resolution) - 0.5, 0.0)
        i0 = np.minimum(np.floor(x).astype(np.int64), A - 1)
        return i0, np.minimum(i0 + 1, A - 1), (x - i0).astype(np.float32)[:, None]

    r0, r1, fr = taps(rows)
    c0, c1, fc = taps(cols)
    return ((texels[r0 * A + c0] * (1 - fc) + texels[r0 * A + c1] * fc) * (1 - fr)
            + (texels[r1 * A + c0] * (1 - fc) + texels[r1 * A + c1] * fc) * fr)


def pca_albedo(model: FaceModel, coefficients: np.ndarray | None, resolution: int) -> np.ndarray:
    """The PCA albedo for `coefficients` as an (R, R, 3) map in [0, 1]."""
    return resize_maps(model.albedo_map(coefficients), resolution)


def fit_albedo_and_light(model: FaceModel, texture: np.ndarray, normals: np.ndarray, visible: np.ndarray, *,
                         prior_weight: float = 1e-5, light_prior: float = 1.0, iterations: int = 3,
                         stride: int = 8):
    """PCA coefficients (K,), PCA albedo map (R, R, 3) and SH (3, 9) explaining `texture`.

    `texture`, `normals` (R, R, 3) and `visible` (R, R) bool are UV maps. The coefficients
    minimise mean((texture - albedo * shading)^2) + prior_weight * ||p||^2 over every
    `stride`-th visible texel (plenty for a low-frequency model). When the albedo model was
    learned under white light (`model.light_brightness`), the lighting carries the same prior
    with weight `light_prior` (`shading.light_prior`), so skin tone goes to the albedo.
    """
    R = texture.shape[0]
    vis = np.asarray(visible, bool)
    if vis.sum() < 9:
        raise ValueError("Too few visible texels to estimate the lighting.")
    K = model.n_albedo
    prior = {}
    if model.light_brightness is not None and light_prior > 0:
        prior = {"colour_prior": light_prior, "brightness": model.light_brightness, "brightness_prior": light_prior}
    sub = np.flatnonzero(vis.reshape(-1))[::stride]
    tex_s, nrm_s = texture.reshape(-1, 3)[sub], normals.reshape(-1, 3)[sub]
    mean = np.clip(sample_maps(model.albedo_mean, R, sub), 0, 1)
    coeffs = np.zeros(K, np.float32)
    if not K:
        albedo = pca_albedo(model, coeffs, R)
        return coeffs, albedo, estimate_sh(texture[vis], albedo[vis], normals[vis], **prior).astype(np.float32)
    sh = estimate_sh(tex_s, mean, nrm_s, **prior)
    basis = _sample_texels(model.albedo_basis, R, sub).reshape(len(sub), K, 3)
    for _ in range(iterations):
        shading = irradiance(nrm_s, sh)
        lhs = np.zeros((K, K))
        rhs = np.zeros(K)
        for c in range(3):  # normal equations channel by channel: no (3N, K) copy
            a = basis[:, :, c] * shading[:, c:c + 1]
            lhs += a.T @ a
            rhs += a.T @ (tex_s[:, c] - mean[:, c] * shading[:, c])
        n = 3 * len(sub)
        coeffs = np.linalg.solve(lhs / n + prior_weight * np.eye(K), rhs / n).astype(np.float32)
        albedo_s = np.clip(mean + np.einsum("nkc,k->nc", basis, coeffs), 0, 1)
        sh = estimate_sh(tex_s, albedo_s, nrm_s, **prior)
    albedo = pca_albedo(model, coeffs, R)
    sh = estimate_sh(texture[vis], albedo[vis], normals[vis], **prior)  # the final light from every visible texel
    return coeffs, albedo, sh.astype(np.float32)
