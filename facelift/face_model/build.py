"""Building the linear shape model from MediaPipe landmarks of many photos.

Image-space landmarks -> model space -> generalized Procrustes alignment -> frontal,
symmetric mean with a 0.09 m outer-eye-corner distance -> PCA shape basis -> FaceModel.
"""

from __future__ import annotations

import numpy as np

from ..geometry.normals import face_normals
from ..geometry.rotation import rotation_between
from .model import FaceModel
from .topology import N_MESH_VERTICES, mediapipe_triangles, mirror_indices
from .uv_layout import compute_uv_layout, layout_distortion

EYE_CORNERS = (33, 263)  # MediaPipe outer eye corners
EYE_CORNER_DISTANCE = 0.09  # metres
DEFAULT_ALBEDO = (0.72, 0.53, 0.44)  # mid skin tone, sRGB in [0, 1]


def landmarks_to_model_space(points: np.ndarray) -> np.ndarray:
    """MediaPipe points (..., >=468, 3) in image pixels -> (..., 468, 3) with X right, Y up,
    Z towards the camera (still in pixel units)."""
    p = np.asarray(points, np.float64)[..., :N_MESH_VERTICES, :]
    return p * np.array([1.0, -1.0, -1.0])


def similarity_transform(source: np.ndarray, target: np.ndarray, scale: bool = True):
    """Least-squares s, R, t with target ~ s * R @ source + t (Umeyama; R a proper rotation)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    U, S, Vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / (a**2).sum()) if scale else 1.0
    return s, R, mu_t - s * R @ mu_s


def align_to(shapes: np.ndarray, target: np.ndarray, scale: bool = True) -> np.ndarray:
    """Each shape (M, N, 3) similarity-aligned to `target` (N, 3)."""
    out = np.empty_like(shapes, dtype=np.float64)
    for i, x in enumerate(shapes):
        s, R, t = similarity_transform(x, target, scale)
        out[i] = s * x @ R.T + t
    return out


def _normalise(shape: np.ndarray) -> np.ndarray:
    c = shape - shape.mean(0)
    return c / np.linalg.norm(c)


def generalized_procrustes(shapes: np.ndarray, n_iter: int = 20, tol: float = 1e-7):
    """Generalized Procrustes analysis (similarity). Returns (aligned (M, N, 3), mean (N, 3)),
    the mean centred with unit Frobenius norm; the initial reference is the mean of the
    centred, unit-size shapes, so the result keeps the data's average orientation."""
    shapes = np.asarray(shapes, np.float64)
    mean = _normalise(np.mean([_normalise(x) for x in shapes], axis=0))
    aligned = shapes
    for _ in range(n_iter):
        aligned = align_to(shapes, mean)
        new = aligned.mean(0)
        s, R, t = similarity_transform(new, mean)
        new = _normalise(s * new @ R.T + t)
        change = np.linalg.norm(new - mean)
        mean = new
        if change < tol:
            break
    return align_to(shapes, mean), mean


def frontalize(shape: np.ndarray, triangles: np.ndarray, n_iter: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a roughly frontal face so its symmetry plane is X = 0 and its summed surface
    normal points to +Z. Returns (shape, mirror map found on the result)."""
    v = shape - shape.mean(0)
    for _ in range(n_iter):
        mirror = mirror_indices(v)
        pairs = mirror != np.arange(len(v))
        d = v[pairs] - v[mirror[pairs]]
        d *= np.sign(d[:, 0])[:, None]  # both members of a pair give the same direction
        normal = np.linalg.svd(d, full_matrices=False)[2][0]
        normal *= np.sign(normal[0])
        v = v @ rotation_between(normal, np.array([1.0, 0.0, 0.0])).T
        facing = face_normals(v, triangles).sum(0)
        facing[0] = 0.0
        v = v @ rotation_between(facing, np.array([0.0, 0.0, 1.0])).T
        v -= v.mean(0)
    return v, mirror_indices(v)


def symmetrize(shape: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Average a shape with its X-reflection (vertex k with the reflection of mirror[k])."""
    reflected = shape[mirror] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (shape + reflected)


def to_metric(shape: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale so the outer eye corners are 0.09 m apart and centre at the origin."""
    a, b = EYE_CORNERS
    scale = EYE_CORNER_DISTANCE / np.linalg.norm(shape[a] - shape[b])
    out = shape * scale
    return out - out.mean(0), float(scale)


def shape_pca(aligned: np.ndarray, mean: np.ndarray, n_components: int):
    """PCA of residuals (M, N, 3) - mean. Returns basis (K, N, 3) scaled by the standard
    deviation of each component and the explained-variance ratios of all components."""
    X = (aligned - mean).reshape(len(aligned), -1)
    X = X - X.mean(0)
    _, S, Vt = np.linalg.svd(X, full_matrices=False)
    var = S**2 / max(len(X) - 1, 1)
    k = min(n_components, len(var))
    basis = (Vt[:k] * np.sqrt(var[:k])[:, None]).reshape(k, -1, 3)
    return basis, var / var.sum()


def build_face_model(landmarks: np.ndarray, n_shape: int = 40, uv_method: str = "lscm",
                     albedo_resolution: int = 64, config: dict | None = None) -> FaceModel:
    """A FaceModel from MediaPipe landmarks (M, >=468, 3) of M photos, image space."""
    shapes = landmarks_to_model_space(landmarks)
    if len(shapes) < 2:
        raise ValueError("need landmarks of at least two faces")
    triangles = mediapipe_triangles()
    _, gpa_mean = generalized_procrustes(shapes)
    front, mirror = frontalize(gpa_mean, triangles)
    mean, _ = to_metric(symmetrize(front, mirror))
    triangles = mediapipe_triangles(mean)
    aligned = align_to(shapes, mean)
    basis, ratio = shape_pca(aligned, mean, n_shape)

    uv = compute_uv_layout(mean, triangles, mirror, method=uv_method)
    layouts = {}
    for method in ("lscm", "cylindrical"):
        layout = uv if method == uv_method else compute_uv_layout(mean, triangles, mirror, method=method)
        layouts[method] = {k: round(val, 4) for k, val in layout_distortion(mean, triangles, layout).items()}

    A = albedo_resolution
    albedo_mean = np.broadcast_to(np.array(DEFAULT_ALBEDO, np.float32)[:, None, None], (3, A, A)).copy()
    cfg = {
        "name": "facelift-mediapipe-pca",
        "topology": "MediaPipe FaceMesh 468 vertices; triangles recovered from "
                    "FACEMESH_TESSELATION edges, eye and mouth holes closed (898 triangles)",
        "n_vertices": int(len(mean)),
        "n_triangles": int(len(triangles)),
        "midline_vertices": int((mirror == np.arange(len(mirror))).sum()),
        "shape_model": "generalized Procrustes (similarity) + PCA of aligned residuals; basis scaled by std",
        "n_shape": int(basis.shape[0]),
        "shape_explained_variance": [round(float(r), 6) for r in ratio[: basis.shape[0]]],
        "shape_explained_variance_total": round(float(ratio[: basis.shape[0]].sum()), 6),
        "units": "metres; outer eye corners (33, 263) 0.09 apart",
        "uv_method": uv_method,
        "uv_distortion": layouts,
        "albedo_model": "none (constant mean; filled by training)",
    }
    cfg.update(config or {})
    return FaceModel(mean, basis, triangles, uv, mirror, albedo_mean,
                     np.zeros((0, 3, A, A), np.float32), config=cfg)
