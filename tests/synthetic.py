"""A small synthetic face model (an ellipsoid cap) for tests that must not need
the shipped checkpoints. It follows every convention of docs/ARCHITECTURE.md."""

from __future__ import annotations

import numpy as np

from facelift.face_model import FaceModel


def ellipsoid_face_model(nu: int = 21, nv: int = 21, n_shape: int = 6, n_albedo: int = 4,
                         albedo_resolution: int = 32, seed: int = 0) -> FaceModel:
    """Grid of nu x nv vertices (nu odd, so the midline is a grid column)."""
    assert nu % 2 == 1
    u = np.linspace(0.05, 0.95, nu)
    v = np.linspace(0.05, 0.95, nv)
    uu, vv = np.meshgrid(u, v)  # (nv, nu): row = v index, column = u index
    theta = (uu - 0.5) * np.deg2rad(150)
    phi = (vv - 0.5) * np.deg2rad(140)
    a, b, c = 0.075, 0.11, 0.09
    x = a * np.sin(theta) * np.cos(phi)
    y = b * np.sin(phi)
    z = c * np.cos(theta) * np.cos(phi)
    mean = np.stack([x, y, z], -1).reshape(-1, 3)
    uv = np.stack([uu, vv], -1).reshape(-1, 2)

    idx = np.arange(nv * nu).reshape(nv, nu)
    mirror = idx[:, ::-1].reshape(-1)
    tris = []
    for r in range(nv - 1):
        for col in range(nu - 1):
            p00, p01, p10, p11 = idx[r, col], idx[r, col + 1], idx[r + 1, col], idx[r + 1, col + 1]
            # u to the right (+X), v up (+Y): counter-clockwise seen from +Z
            tris.append([p00, p01, p11])
            tris.append([p00, p11, p10])
    tris = np.array(tris, np.int32)

    rng = np.random.default_rng(seed)
    basis = []
    for k in range(n_shape):
        cx, cy, cz = rng.normal(size=3)
        px, py = rng.integers(0, 3, size=2)
        bump = (uu - 0.5) ** px * (vv - 0.5) ** py
        d = np.stack([cx * bump, cy * bump, cz * bump], -1).reshape(-1, 3)
        d *= 0.005 / (np.abs(d).max() + 1e-9)
        basis.append(d)
    basis = np.array(basis, np.float32).reshape(n_shape, -1, 3)

    A = albedo_resolution
    gy, gx = np.mgrid[0:A, 0:A] / A
    albedo_mean = np.stack([0.7 + 0.1 * gx, 0.5 + 0.1 * gy, 0.4 + 0.0 * gx]).astype(np.float32)
    albedo_basis = np.array(
        [0.05 * np.stack([np.cos(np.pi * (k + 1) * gx)] * 3) for k in range(n_albedo)], np.float32
    ).reshape(n_albedo, 3, A, A)
    return FaceModel(mean, basis, tris, uv, mirror, albedo_mean, albedo_basis,
                     config={"name": "synthetic-ellipsoid"})
