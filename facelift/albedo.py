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


def pca_albedo(model: FaceModel, coefficients: np.ndarray | None, resolution: int) -> np.ndarray:
    """The PCA albedo for `coefficients` as an (R, R, 3) map in [0, 1]."""
    return resize_maps(model.albedo_map(coefficients), resolution)


def fit_albedo_and_light(model: FaceModel, texture: np.ndarray, normals: np.ndarray, visible: np.ndarray, *,
                         prior_weight: float = 1e-3, iterations: int = 3, stride: int = 4):
    """PCA coefficients (K,), PCA albedo map (R, R, 3) and SH (3, 9) explaining `texture`.

    `texture`, `normals` (R, R, 3) and `visible` (R, R) bool are UV maps. The coefficients
    minimise mean((texture - albedo * shading)^2) + prior_weight * ||p||^2 over every
    `stride`-th visible texel (plenty for a low-frequency model).
    """
    R = texture.shape[0]
    vis = np.asarray(visible, bool)
    if vis.sum() < 9:
        raise ValueError("Too few visible texels to estimate the lighting.")
    coeffs = np.zeros(model.n_albedo, np.float32)
    albedo = pca_albedo(model, coeffs, R)
    tex, nrm = texture[vis], normals[vis]
    sh = estimate_sh(tex, albedo[vis], nrm)
    if model.n_albedo == 0:
        return coeffs, albedo, sh.astype(np.float32)
    sub = np.flatnonzero(vis.reshape(-1))[::stride]
    basis = resize_maps(model.albedo_basis, R).reshape(model.n_albedo, R * R, 3)[:, sub]
    mean = resize_maps(model.albedo_mean, R).reshape(R * R, 3)[sub]
    tex_s, nrm_s = texture.reshape(-1, 3)[sub], normals.reshape(-1, 3)[sub]
    for _ in range(iterations):
        shading = irradiance(nrm_s, sh)
        A = (basis * shading[None]).reshape(model.n_albedo, -1).T
        b = (tex_s - mean * shading).reshape(-1)
        lhs = A.T @ A / len(b) + prior_weight * np.eye(model.n_albedo)
        coeffs = np.linalg.solve(lhs, A.T @ b / len(b)).astype(np.float32)
        albedo = pca_albedo(model, coeffs, R)
        sh = estimate_sh(tex, albedo[vis], nrm)
    return coeffs, albedo, sh.astype(np.float32)
