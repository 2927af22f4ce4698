"""Landmark fitting of the face model (paper eq. 1).

Finds the weak-perspective pose `s, R, t` and shape coefficients `alpha` minimising

    sum_k w_k ||L_k - P(X_{i_k}(alpha))||^2 / (s_ref / 1000)^2  +  shape_weight * ||alpha||^2

where `P(X) = s * [X_c[0], -X_c[1]] + t`, `X_c = R @ X` (docs/ARCHITECTURE.md), `L_k` are
image points and `i_k` the model vertices they correspond to. Dividing the pixel residuals
by `s_ref` (pixels per metre, the scale found by the pose-only stage, then held fixed) and
multiplying by 1000 expresses them in millimetres on the face, so the objective does not
depend on the image size: `shape_weight` is the variance, in mm^2, of the per-coordinate
landmark error that a Gaussian prior `alpha ~ N(0, I)` is balanced against (the weights
are rescaled to mean 1 first). Larger values trust the landmarks less and keep the
shape closer to the mean.

Stages: (a) closed-form affine camera on the mean shape, projected to a scaled rotation;
(b) Levenberg-Marquardt on the pose; (c) alternations of closed-form ridge regression
for `alpha` and LM on the pose; (d) joint LM on everything. Jacobians are analytic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from .face_model import FaceModel
from .geometry.rotation import rodrigues, yaw_pitch_roll

#: Fewest landmarks `fit_shape` accepts (the affine initialisation has 8 unknowns).
MIN_LANDMARKS = 6
#: ftol, xtol and gtol of the Levenberg-Marquardt stages (scipy's default 1e-8): on real photos the
#: vertices end within 3 micrometres of the default's (median 0.6), one or two iterations sooner.
TOLERANCE = 1e-5

LandmarkIndices = Union[np.ndarray, Sequence[int], Callable[[np.ndarray], np.ndarray], None]


# ---- projection --------------------------------------------------------------------------------
def project_points(vertices_model: np.ndarray, scale: float, rotation: np.ndarray,
                   translation: np.ndarray) -> np.ndarray:
    """Weak-perspective image points `(N, 2)`: `x = s Xc[0] + t0`, `y = -s Xc[1] + t1`."""
    xc = np.asarray(vertices_model, np.float64) @ np.asarray(rotation, np.float64).T
    t = np.asarray(translation, np.float64)
    return np.stack([scale * xc[:, 0] + t[0], -scale * xc[:, 1] + t[1]], -1)


@dataclass
class FitResult:
    """A fitted face: weak-perspective pose and shape coefficients.

    scale            pixels per metre
    rotation         (3, 3) model -> camera, `X_cam = rotation @ X_model`
    translation      (2,) pixels
    shape_coefficients (K,) for the first K basis vectors of the model
    rms_error_px     root mean square over landmarks of the (weighted) Euclidean
                     reprojection error, pixels
    n_iterations     Levenberg-Marquardt iterations (Jacobian evaluations), all stages
    landmark_indices (L,) model vertices the landmarks were matched to in the last stage
    converged        whether the final LM stage met its tolerance before `max_iterations`
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    shape_coefficients: np.ndarray
    rms_error_px: float
    n_iterations: int
    landmark_indices: np.ndarray
    converged: bool = True

    def vertices_model(self, model: FaceModel) -> np.ndarray:
        """Fitted shape in model space, `(N, 3)`."""
        return model.shape(self.shape_coefficients)

    def vertices_camera(self, model: FaceModel) -> np.ndarray:
        """Fitted shape rotated into camera space (`R @ X`, not scaled or translated)."""
        return self.vertices_model(model) @ self.rotation.T.astype(np.float32)

    def project(self, model: FaceModel) -> np.ndarray:
        """Image points `(N, 2)` of every model vertex."""
        return project_points(self.vertices_model(model), self.scale, self.rotation, self.translation)

    def yaw_pitch_roll(self) -> tuple[float, float, float]:
        """Head pose in degrees, with `rotation = R_y(yaw) @ R_x(pitch) @ R_z(roll)`.

        Right-handed rotations about the camera axes (X image-right, Y up, Z towards the
        camera). Positive yaw turns the nose towards the image right (the subject's left);
        positive pitch tilts the nose down; positive roll turns the face counter-clockwise
        as seen in the image. Inverse: `geometry.rotation.rotation_from_yaw_pitch_roll`.
        """
        return yaw_pitch_roll(self.rotation)


# ---- the least-squares problem ------------------------------------------------------------------
class _Problem:
    """Residuals and Jacobians of eq. 1 for fixed landmark indices.

    Parameter vector: rotation vector (3), scale, translation (2), alpha (K).
    Residuals: 2L landmark coordinates (x, y interleaved), then K regulariser terms.
    """

    def __init__(self, mean, basis, points, sqrt_w, shape_weight):
        self.points = points
        self.sqrt_w = sqrt_w
        self.sqrt_reg = math.sqrt(shape_weight)
        self.set_indices(mean, basis)
        self.norm = 1.0

    def set_indices(self, mean, basis):
        self.mean = mean  # (L, 3)
        self.K = basis.shape[0]
        self.basis = np.ascontiguousarray(basis.transpose(1, 2, 0))  # (L, 3, K)
        self.basis_flat = self.basis.reshape(3 * len(mean), self.K)

    def shape(self, alpha):
        if self.K == 0:
            return self.mean
        return self.mean + (self.basis_flat @ alpha).reshape(-1, 3)

    def _rotated_basis(self, R, s):
        """Image-space derivatives of the projected points w.r.t. alpha: (L, K) for x and y."""
        B = self.basis
        bx = s * (R[0, 0] * B[:, 0] + R[0, 1] * B[:, 1] + R[0, 2] * B[:, 2])
        by = -s * (R[1, 0] * B[:, 0] + R[1, 1] * B[:, 1] + R[1, 2] * B[:, 2])
        return bx, by

    def _pixel_residuals(self, R, s, t, X):
        xc = X @ R.T
        proj = np.stack([s * xc[:, 0] + t[0], -s * xc[:, 1] + t[1]], -1)
        return (proj - self.points) * (self.sqrt_w[:, None] * self.norm)

    def residuals(self, p, alpha=None):
        """Full residuals; with `alpha` given, `p` is the pose only and alpha is fixed."""
        R, _ = rodrigues(p[:3])
        a = p[6:] if alpha is None else alpha
        r = self._pixel_residuals(R, p[3], p[4:6], self.shape(a)).ravel()
        return r if alpha is not None else np.concatenate([r, self.sqrt_reg * a])

    def jacobian(self, p, alpha=None):
        R, J = rodrigues(p[:3])
        s = p[3]
        a = p[6:] if alpha is None else alpha
        xc = self.shape(a) @ R.T
        L = len(xc)
        n_par = 6 if alpha is not None else 6 + self.K
        jac = np.zeros((2 * L + (0 if alpha is not None else self.K), n_par))
        jx = jac[0:2 * L:2]
        jy = jac[1:2 * L:2]
        x, y, z = xc[:, 0:1], xc[:, 1:2], xc[:, 2:3]
        zero = np.zeros_like(x)
        # d(R X)/dr = -[R X]_x J: row 0 of -[v]_x is (0, z, -y), row 1 is (-z, 0, x).
        jx[:, 0:3] = s * np.hstack([zero, z, -y]) @ J
        jy[:, 0:3] = s * np.hstack([z, zero, -x]) @ J
        jx[:, 3] = xc[:, 0]
        jy[:, 3] = -xc[:, 1]
        jx[:, 4] = 1.0
        jy[:, 5] = 1.0
        if alpha is None and self.K:
            jx[:, 6:], jy[:, 6:] = self._rotated_basis(R, s)
            jac[2 * L:, 6:] = self.sqrt_reg * np.eye(self.K)
        jac[:2 * L] *= np.repeat(self.sqrt_w * self.norm, 2)[:, None]
        return jac

    def solve_shape(self, R, s, t):
        """Closed-form ridge regression for alpha at a fixed pose."""
        if self.K == 0:
            return np.zeros(0)
        bx, by = self._rotated_basis(R, s)
        A = np.stack([bx, by], 1).reshape(-1, self.K)  # (2L, K), rows x0, y0, x1, ...
        b = -self._pixel_residuals(R, s, t, self.mean).ravel()
        Aw = A * np.repeat(self.sqrt_w * self.norm, 2)[:, None]
        lhs = Aw.T @ Aw + self.sqrt_reg ** 2 * np.eye(self.K)
        return np.linalg.solve(lhs, Aw.T @ b)


def _affine_pose(X: np.ndarray, points: np.ndarray, w: np.ndarray):
    """Weighted affine camera from 2D-3D correspondences, projected onto s*[R0; R1]."""
    Xh = np.hstack([X, np.ones((len(X), 1))])
    sw = np.sqrt(w)[:, None]
    M, *_ = np.linalg.lstsq(Xh * sw, points * sw, rcond=None)  # (4, 2)
    A = np.stack([M[:3, 0], -M[:3, 1]])  # rows ~ s * R[0], s * R[1]
    U, sig, Vt = np.linalg.svd(A, full_matrices=False)
    rows = U @ Vt
    R = np.vstack([rows, np.cross(rows[0], rows[1])])
    return R, float(sig.mean()), M[3].copy()


def _rotvec(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(R).as_rotvec()


# ---- the fit ---------------------------------------------------------------------------------------
def fit_shape(model: FaceModel, points2d, landmark_indices: LandmarkIndices = None, *,
              n_shape: int | None = None, shape_weight: float = 1.0, weights=None,
              init: FitResult | None = None, max_iterations: int = 100,
              n_alternations: int = 3) -> FitResult:
    """Fit pose and shape to 2D landmarks (eq. 1, see the module docstring).

    points2d          (L, 2) image points, pixels
    landmark_indices  (L,) model vertex of each point; None means `arange(L)` (MediaPipe's
                      first 468 landmarks are the model's vertices). May also be a callable
                      `f(rotation (3, 3)) -> (L,) indices`, re-evaluated with the current
                      rotation estimate (identity, or `init.rotation`, at the start) before
                      each pose/shape alternation and the joint stage: the hook for sliding
                      contour landmarks on non-frontal faces (paper ref. [26]).
    n_shape           number of leading basis vectors to fit (default: all; 0 = rigid)
    shape_weight      regulariser weight; see the module docstring (mm^2)
    weights           (L,) non-negative confidence per landmark (rescaled to mean 1)
    init              a previous FitResult to start from instead of the closed-form pose
    max_iterations    cap on LM function evaluations per stage
    n_alternations    shape/pose alternations before the joint stage

    A fit that hits `max_iterations` is returned with `converged=False`.
    Raises ValueError for malformed or non-finite input.
    """
    points = np.asarray(points2d, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points2d must have shape (L, 2); got {points.shape}.")
    n_pts = len(points)
    if n_pts < MIN_LANDMARKS:
        raise ValueError(f"fit_shape needs at least {MIN_LANDMARKS} landmarks; got {n_pts}.")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"points2d contains {int((~np.isfinite(points)).any(1).sum())} "
                         "landmark(s) with NaN or infinite coordinates.")
    if not (math.isfinite(shape_weight) and shape_weight >= 0):
        raise ValueError(f"shape_weight must be a finite non-negative number; got {shape_weight}.")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1; got {max_iterations}.")
    K = model.n_shape if n_shape is None else int(n_shape)
    if not 0 <= K <= model.n_shape:
        raise ValueError(f"n_shape must be between 0 and {model.n_shape}; got {n_shape}.")

    if weights is None:
        w = np.ones(n_pts)
    else:
        w = np.asarray(weights, np.float64)
        if w.shape != (n_pts,):
            raise ValueError(f"weights must have shape ({n_pts},); got {w.shape}.")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative.")
        if np.count_nonzero(w) < MIN_LANDMARKS:
            raise ValueError(f"fit_shape needs at least {MIN_LANDMARKS} landmarks with positive weight; "
                             f"got {np.count_nonzero(w)}.")
        w = w / w.mean()

    mean_all = model.mean_shape.astype(np.float64)
    basis_all = model.shape_basis[:K].astype(np.float64)

    def indices_for(R):
        idx = landmark_indices(R) if callable(landmark_indices) else (
            np.arange(n_pts) if landmark_indices is None else landmark_indices)
        idx = np.asarray(idx)
        if idx.shape != (n_pts,) or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"landmark_indices must be {n_pts} integers (one per point); "
                             f"got shape {idx.shape}, dtype {idx.dtype}.")
        if idx.min() < 0 or idx.max() >= model.n_vertices:
            raise ValueError(f"landmark_indices must lie in [0, {model.n_vertices}); "
                             f"got values from {idx.min()} to {idx.max()}.")
        return idx

    R0 = np.eye(3) if init is None else np.asarray(init.rotation, np.float64)
    idx = indices_for(R0)
    prob = _Problem(mean_all[idx], basis_all[:, idx], points, np.sqrt(w), shape_weight)

    # (a) initial pose
    alpha = np.zeros(K)
    if init is None:
        R, s, t = _affine_pose(prob.mean, points, w)
    else:
        R, s, t = R0, float(init.scale), np.asarray(init.translation, np.float64)
        k = min(K, len(init.shape_coefficients))
        alpha[:k] = init.shape_coefficients[:k]
    if not (math.isfinite(s) and s > 1e-12):
        raise ValueError("The landmarks are degenerate (no spread to fit a face to).")
    prob.norm = 1000.0 / s
    n_iter = 0

    def lm(x0, alpha=None):
        nonlocal n_iter
        args = () if alpha is None else (alpha,)
        res = least_squares(prob.residuals, x0, jac=prob.jacobian, method="lm", x_scale="jac",
                            max_nfev=max_iterations, args=args, ftol=TOLERANCE, xtol=TOLERANCE, gtol=TOLERANCE)
        n_iter += res.njev or 0
        return res

    def unpack(pose):
        return rodrigues(pose[:3])[0], float(pose[3]), pose[4:6].copy()

    # (b) pose only, on the mean shape or the initial coefficients
    res = lm(np.concatenate([_rotvec(R), [s], t]), alpha)
    pose = res.x
    R, s, t = unpack(pose)
    prob.norm = 1000.0 / abs(s)

    # (c) alternate shape (closed form) and pose; landmarks may slide with the pose
    sliding = callable(landmark_indices)
    for _ in range(n_alternations if K or sliding else 0):
        if sliding:
            idx = indices_for(R)
            prob.set_indices(mean_all[idx], basis_all[:, idx])
        if K:
            alpha = prob.solve_shape(R, s, t)
        pose = lm(pose, alpha).x
        R, s, t = unpack(pose)

    # (d) joint
    if sliding:
        idx = indices_for(R)
        prob.set_indices(mean_all[idx], basis_all[:, idx])
    if K:
        res = lm(np.concatenate([pose, alpha]))
        pose, alpha = res.x[:6], res.x[6:]
    elif sliding:
        res = lm(pose, alpha)
        pose = res.x
    converged = res.status > 0
    R, s, t = unpack(pose)
    if s < 0:  # s R and (-s)(R_z(pi) R) project identically; keep s positive
        s, R, t = -s, np.diag([-1.0, -1.0, 1.0]) @ R, t

    err = project_points(prob.shape(alpha), s, R, t) - points
    rms = float(np.sqrt(np.sum(w * np.sum(err ** 2, 1)) / np.sum(w)))
    return FitResult(scale=s, rotation=R, translation=t, shape_coefficients=alpha,
                     rms_error_px=rms, n_iterations=n_iter, landmark_indices=idx,
                     converged=bool(converged))
