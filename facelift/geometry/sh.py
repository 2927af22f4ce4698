"""Second-order spherical-harmonics Lambertian shading (paper eq. 3).

Conventions (docs/ARCHITECTURE.md): 9 real SH basis functions ordered
`Y00, Y1-1, Y10, Y11, Y2-2, Y2-1, Y20, Y21, Y22`, evaluated on unit normals in camera
space (X image-right, Y up, Z towards the camera). Lighting `gamma` is `(3, 9)` (RGB x
basis function) or batched `(B, 3, 9)`. Irradiance is
`E_c(n) = sum_b gamma[c, b] * A_b * Y_b(n)` with the Lambertian convolution constants
`A = (pi, 2pi/3, 2pi/3, 2pi/3, pi/4, ...)` folded in here, so `gamma` holds the SH
coefficients of the incoming radiance.

Every function accepts numpy arrays or torch tensors and returns the same kind; with
tensors the computation is differentiable and stays on the input's device and dtype.
`estimate_sh` and `rotate_sh` also accept leading batch dimensions.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache

import numpy as np

# Real SH normalisation constants.
_C0 = 0.5 / math.sqrt(math.pi)  # Y00
_C1 = math.sqrt(3.0 / (4.0 * math.pi))  # Y1m
_C2 = 0.5 * math.sqrt(15.0 / math.pi)  # Y2-2, Y2-1, Y21
_C20 = 0.25 * math.sqrt(5.0 / math.pi)  # Y20
_C22 = 0.25 * math.sqrt(15.0 / math.pi)  # Y22

#: Lambertian (clamped-cosine) convolution constant of each of the 9 basis functions.
LAMBERT = np.array([math.pi] + [2.0 * math.pi / 3.0] * 3 + [math.pi / 4.0] * 5)

#: Basis functions per band: band 0 -> [0], band 1 -> [1, 4), band 2 -> [4, 9).
BANDS = (slice(0, 1), slice(1, 4), slice(4, 9))

#: Maximum |clamped cosine - its order-2 SH approximation|, reached at grazing angles
#: (n . d = 0), relative to the light's intensity: 3/32.
DIRECTIONAL_MAX_ERROR = 3.0 / 32.0


# ---- numpy / torch dispatch -------------------------------------------------------------
def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _prepare(*arrays):
    """Convert all inputs to one backend: torch if any input is a tensor, else numpy.

    Returns (xp, converted arrays...). numpy inputs become float64 unless already a
    floating dtype; tensors adopt the dtype and device of the first tensor.
    """
    like = next((a for a in arrays if _is_tensor(a)), None)
    if like is None:
        out = []
        for a in arrays:
            a = np.asarray(a)
            out.append(a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64))
        return (np, *out)
    import torch

    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    out = [torch.as_tensor(a, dtype=dtype, device=like.device) for a in arrays]
    return (torch, *out)


def _const(xp, values, like):
    if xp is np:
        return np.asarray(values, dtype=like.dtype)
    return xp.as_tensor(np.asarray(values), dtype=like.dtype, device=like.device)


def _check_normals(normals) -> None:
    if normals.ndim < 1 or normals.shape[-1] != 3:
        raise ValueError(f"normals must have shape (..., 3); got {tuple(normals.shape)}.")


def _check_gamma(gamma) -> None:
    if gamma.ndim not in (2, 3) or tuple(gamma.shape[-2:]) != (3, 9):
        raise ValueError(
            f"SH lighting gamma must have shape (3, 9) or (B, 3, 9); got {tuple(gamma.shape)}."
        )


# ---- basis and shading ------------------------------------------------------------------
def sh_basis(normals):
    """Real SH basis `(..., 9)` at unit normals `(..., 3)` (not renormalised here)."""
    (xp, n) = _prepare(normals)
    _check_normals(n)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    if xp is np:  # filled in place: ~3x faster than stacking nine arrays (same values)
        out = np.empty(n.shape[:-1] + (9,), n.dtype)
        out[..., 0] = _C0
        out[..., 1], out[..., 2], out[..., 3] = _C1 * y, _C1 * z, _C1 * x
        out[..., 4], out[..., 5] = _C2 * x * y, _C2 * y * z
        out[..., 6] = _C20 * (3.0 * z * z - 1.0)
        out[..., 7], out[..., 8] = _C2 * x * z, _C22 * (x * x - y * y)
        return out
    return xp.stack(
        [
            _C0 * xp.ones_like(x),
            _C1 * y,
            _C1 * z,
            _C1 * x,
            _C2 * x * y,
            _C2 * y * z,
            _C20 * (3.0 * z * z - 1.0),
            _C2 * x * z,
            _C22 * (x * x - y * y),
        ],
        -1,
    )


def irradiance(normals, gamma):
    """Irradiance `(..., 3)` at unit normals.

    `gamma` (3, 9) lights every normal; batched `gamma` (B, 3, 9) needs normals
    `(B, ..., 3)` and lights each batch item with its own coefficients.
    """
    xp, n, g = _prepare(normals, gamma)
    _check_normals(n)
    _check_gamma(g)
    basis = sh_basis(n)
    g = g * _const(xp, LAMBERT, g)  # the Lambertian constants on the 27 coefficients, not on every normal
    if g.ndim == 2:
        return basis @ g.T  # a matmul: numpy's einsum here is ~10x slower
    if n.ndim < 2 or n.shape[0] != g.shape[0]:
        raise ValueError(
            f"batched gamma {tuple(g.shape)} needs normals of shape (B, ..., 3) with "
            f"B = {g.shape[0]}; got {tuple(n.shape)}."
        )
    flat = basis.reshape(basis.shape[0], -1, 9)
    out = flat @ xp.swapaxes(g, -1, -2)
    return out.reshape(*basis.shape[:-1], 3)


def shade(albedo, normals, gamma):
    """Lambertian colour `albedo * irradiance(normals, gamma)`, shape `(..., 3)`."""
    xp, a, n, g = _prepare(albedo, normals, gamma)
    e = irradiance(n, g)
    if tuple(a.shape) != tuple(e.shape):
        raise ValueError(f"albedo shape {tuple(a.shape)} does not match normals' {tuple(n.shape)}.")
    return a * e


def mean_irradiance(gamma, normals, weights=None):
    """Grey irradiance averaged over `normals` `(..., M, 3)` (weighted by `weights` `(..., M)`)
    under gamma `(..., 3, 9)`: `(...)`. Linear in gamma: `mean_c gamma[c] . _mean_basis`."""
    xp, g, n, *w = _prepare(gamma, normals, *(() if weights is None else (weights,)))
    return (g.sum(-2) / 3 * _mean_basis(xp, n, w[0] if w else None)).sum(-1)


def _mean_basis(xp, n, w=None, basis=None):
    """`(..., 9)`: the weighted mean over M of `A_b Y_b(n_m)` (`basis`: those values, if known)."""
    if basis is None:
        basis = sh_basis(n) * _const(xp, LAMBERT, n)  # (..., M, 9)
    if w is None:
        return basis.mean(-2)
    return (basis * w[..., None]).sum(-2) / w.sum(-1)[..., None]


def light_prior(gamma, brightness: float | None = None, normals=None, weights=None):
    """The white-light prior of `estimate_sh`, per lighting: `(...)` from gamma `(..., 3, 9)`.

    `sum_{c,b} (gamma[c,b] - mean_c gamma[c,b])^2` (the colour of the light) plus, with a
    `brightness` reference, `(mean_irradiance(gamma, normals, weights) - brightness)^2`: the
    light falling on the face has a typical strength. Skin tone and light are ambiguous in
    `albedo * shading`; this prior gives the skin's tone and brightness to the albedo and
    leaves the direction of the light free.
    """
    xp, g = _prepare(gamma)
    if g.ndim < 2 or tuple(g.shape[-2:]) != (3, 9):
        raise ValueError(f"SH lighting must have shape (..., 3, 9); got {tuple(g.shape)}.")
    grey = g.sum(-2)[..., None, :] / 3
    out = ((g - grey) ** 2).sum(-1).sum(-1)
    if brightness is not None:
        if normals is None:
            raise ValueError("a brightness prior needs the normals it is averaged over.")
        out = out + (mean_irradiance(g, normals, weights) - brightness) ** 2
    return out


def estimate_sh(texture, albedo, normals, weights=None, ridge: float = 1e-4, colour_prior: float = 0.0,
                brightness: float | None = None, brightness_prior: float = 0.0, basis=None):
    """Closed-form weighted least-squares SH lighting `(3, 9)` per colour channel.

    Solves `min_g sum_m w_m (texture[m,c] - albedo[m,c] * sum_b g[c,b] A_b Y_b(n_m))^2
    + ridge * ||g[c]||^2` for each channel c. Inputs are `(M, 3)` (optionally with leading
    batch dimensions `(..., M, 3)`, giving `(..., 3, 9)`), `weights` is `(M,)` / `(..., M)`
    and non-negative. The data term is divided by `sum(w)`, so `ridge` does not depend on
    the number of samples.

    `colour_prior` > 0 adds `colour_prior * sum_{c,b} (g[c,b] - mean_c g[c,b])^2` and
    `brightness_prior` > 0 adds `brightness_prior * (mean_irradiance(g, normals, weights) -
    brightness)^2` (see `light_prior`); the channels are then solved jointly.
    `basis`: `sh_basis(normals) * LAMBERT` when the caller already has it (repeated solves).
    """
    extra = () if weights is None else (weights,)
    xp, t, a, n, *w = _prepare(texture, albedo, normals, *extra)
    for name, arr in (("texture", t), ("albedo", a), ("normals", n)):
        if arr.ndim < 2 or arr.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (M, 3); got {tuple(arr.shape)}.")
    if not (tuple(t.shape) == tuple(a.shape) == tuple(n.shape)):
        raise ValueError(
            f"texture {tuple(t.shape)}, albedo {tuple(a.shape)} and normals {tuple(n.shape)} "
            "must have the same shape."
        )
    if t.shape[-2] < 9:
        raise ValueError(f"estimate_sh needs at least 9 samples; got {t.shape[-2]}.")
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative; got {ridge}.")
    if not w:
        w = xp.ones_like(t[..., 0])
    else:
        w = w[0]
        if tuple(w.shape) != tuple(t.shape[:-1]):
            raise ValueError(f"weights must have shape {tuple(t.shape[:-1])}; got {tuple(w.shape)}.")
        if bool((w < 0).any()):
            raise ValueError("weights must be non-negative.")
    wsum = w.sum(-1)
    if bool((wsum <= 0).any()):
        raise ValueError("weights sum to zero: nothing to estimate the lighting from.")

    if basis is None:
        basis = sh_basis(n) * _const(xp, LAMBERT, n)  # (..., M, 9)
    # normal equations per channel c: sum_m w_m a_mc^2 B_m B_m^T and sum_m w_m a_mc t_mc B_m, as matmuls
    wa = (w / wsum[..., None])[..., :, None] * a  # (..., M, 3)
    bt = xp.swapaxes(basis, -1, -2)[..., None, :, :]  # (..., 1, 9, M)
    wa2 = xp.swapaxes(wa * a, -1, -2)[..., :, None, :]  # (..., 3, 1, M)
    lhs = (bt * wa2) @ basis[..., None, :, :]  # (..., 3, 9, 9)
    rhs = (bt[..., 0, :, :] @ (wa * t))  # (..., 9, 3)
    rhs = xp.swapaxes(rhs, -1, -2)  # (..., 3, 9)
    return _solve_sh(xp, lhs, rhs, lambda: _mean_basis(xp, n, w, basis), ridge, colour_prior, brightness,
                     brightness_prior)


def _solve_sh(xp, lhs, rhs, mean_basis, ridge: float, colour_prior: float, brightness: float | None,
              brightness_prior: float):
    """`estimate_sh`'s solve from its normal equations: `lhs` (..., 3, 9, 9) and `rhs` (..., 3, 9)
    (the data term divided by the weights' sum); `mean_basis()` gives the (..., 9) weighted mean
    basis the brightness prior needs."""
    t = lhs
    eye = _const(xp, np.eye(9), t)
    if colour_prior < 0 or brightness_prior < 0:
        raise ValueError("colour_prior and brightness_prior must be non-negative.")
    if brightness_prior > 0 and brightness is None:
        raise ValueError("brightness_prior needs a brightness reference value.")
    if colour_prior == 0 and brightness_prior == 0:
        return xp.linalg.solve(lhs + ridge * eye, rhs[..., None])[..., 0]
    # joint 27x27 system, unknowns ordered (channel, basis function)
    lead = tuple(lhs.shape[:-3])
    big = _const(xp, np.zeros((*lead, 27, 27)), t)
    for c in range(3):
        big[..., 9 * c:9 * c + 9, 9 * c:9 * c + 9] = lhs[..., c, :, :]
    centre = np.kron(np.eye(3) - np.full((3, 3), 1 / 3), np.eye(9))
    big = big + _const(xp, ridge * np.eye(27) + colour_prior * centre, t)
    rhs = rhs.reshape(*lead, 27)
    if brightness_prior > 0 and brightness is not None:  # (brightness_prior > 0 needs brightness: above)
        mb = mean_basis()  # (..., 9)
        u = xp.concatenate([mb, mb, mb], -1) / 3  # mean_irradiance(g) = u . g
        big = big + brightness_prior * u[..., :, None] * u[..., None, :]
        rhs = rhs + brightness_prior * float(brightness) * u
    return xp.linalg.solve(big, rhs[..., None])[..., 0].reshape(*lead, 3, 9)


class SHFit:
    """`estimate_sh` repeated on the same (M, 3) unit normals (numpy): the products of their basis
    functions are computed once, so each solve is two small matmuls. Same arguments and result as
    `estimate_sh(texture, albedo, normals, weights, ...)` (up to rounding)."""

    def __init__(self, normals):
        n = np.asarray(normals, np.float64)
        if n.ndim != 2 or n.shape[1] != 3:
            raise ValueError(f"normals must have shape (M, 3); got {n.shape}.")
        if len(n) < 9:
            raise ValueError(f"SHFit needs at least 9 normals; got {len(n)}.")
        self.basis = sh_basis(n) * LAMBERT  # (M, 9)
        self._upper = np.triu_indices(9)  # the 45 distinct products B_i B_j, i <= j
        self.products = np.ascontiguousarray(self.basis[:, self._upper[0]] * self.basis[:, self._upper[1]])

    def __call__(self, texture, albedo, weights=None, ridge: float = 1e-4, colour_prior: float = 0.0,
                 brightness: float | None = None, brightness_prior: float = 0.0) -> np.ndarray:
        t, a = np.asarray(texture, np.float64), np.asarray(albedo, np.float64)
        M = len(self.basis)
        if t.shape != (M, 3) or a.shape != (M, 3):
            raise ValueError(f"texture and albedo must have shape ({M}, 3); got {t.shape} and {a.shape}.")
        w = np.ones(M) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (M,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {M} non-negative values with a positive sum.")
        w = w / w.sum()
        wa = w[:, None] * a
        lhs = np.empty((3, 9, 9))
        lhs[:, self._upper[0], self._upper[1]] = (wa * a).T @ self.products
        lhs[:, self._upper[1], self._upper[0]] = lhs[:, self._upper[0], self._upper[1]]
        rhs = (wa * t).T @ self.basis
        return _solve_sh(np, lhs, rhs, lambda: w @ self.basis, ridge, colour_prior, brightness, brightness_prior)


# ---- rotation -----------------------------------------------------------------------------
# Band-1 functions are (y, z, x) scaled: Y1(n) = C1 * P @ n.
_P1 = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


@lru_cache(maxsize=1)
def _band2_samples():
    """Well-spread sample directions and the pseudo-inverse of their band-2 basis."""
    i = np.arange(64) + 0.5
    z = 1.0 - 2.0 * i / 64
    phi = i * math.pi * (3.0 - math.sqrt(5.0))  # Fibonacci sphere
    r = np.sqrt(1.0 - z * z)
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)
    return dirs, np.linalg.pinv(sh_basis(dirs)[:, BANDS[2]])


def sh_rotation_matrix(R):
    """9x9 block-diagonal `D` with `Y(R @ n) = D @ Y(n)`; `R` (3, 3) or (..., 3, 3).

    Band 1 is `P R P^T` (P reorders xyz to the basis order yzx); band 2 is the 5x5 matrix
    fitted by least squares on 64 fixed directions (exact: band 2 is closed under rotation).
    """
    xp, Rm = _prepare(R)
    if Rm.ndim < 2 or tuple(Rm.shape[-2:]) != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3) or (..., 3, 3); got {tuple(Rm.shape)}.")
    dirs, pinv = _band2_samples()
    dirs, pinv, P = (_const(xp, v, Rm) for v in (dirs, pinv, _P1))
    rotated = xp.einsum("...ij,sj->...si", Rm, dirs)
    d2 = xp.einsum("ks,...sj->...jk", pinv, sh_basis(rotated)[..., BANDS[2]])
    d1 = P @ Rm @ P.T
    D = _const(xp, np.zeros((*Rm.shape[:-2], 9, 9)), Rm)
    D[..., 0, 0] = 1.0
    D[..., 1:4, 1:4] = d1
    D[..., 4:9, 4:9] = d2
    return D


def rotate_sh(gamma, R):
    """Lighting that, seen by rotated normals, shades like the original:
    `irradiance(R @ n, rotate_sh(gamma, R)) == irradiance(n, gamma)`.

    Use it to carry a camera-space lighting estimate to a new head pose: if the normals
    of the posed face are `R @ n`, pass that `R`. `gamma` (..., 3, 9), `R` (..., 3, 3).
    """
    xp, g, Rm = _prepare(gamma, R)
    _check_gamma(g)
    D = sh_rotation_matrix(Rm)
    # D is orthogonal, so the coefficients transform with D itself.
    return xp.einsum("...jk,...ck->...cj", D, g)


# ---- lights ----------------------------------------------------------------------------------
def light_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector `(3,)` towards a light, in camera space.

    Azimuth 0 and elevation 0 is a light at the camera; positive azimuth moves it to the
    image right (+X), positive elevation up (+Y).
    """
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])


def directional_light_sh(direction, color=(1.0, 1.0, 1.0), intensity: float = 1.0,
                         ambient: float = 0.0) -> np.ndarray:
    """SH lighting `(3, 9)` of a distant light from `direction` (towards the light) plus
    uniform ambient light.

    The radiance of a directional light is a delta whose SH projection is `Y_b(d)`; with the
    Lambertian constants this gives the standard order-2 approximation (Ramamoorthi &
    Hanrahan 2001) of `color * (intensity * max(n . d, 0) + ambient)`: bands 0-2 of the
    clamped cosine are exact, `1/4 + (n.d)/2 + 5/32 (3 (n.d)^2 - 1)`, and the dropped higher
    bands leave an error of at most `DIRECTIONAL_MAX_ERROR * intensity` (3/32 at grazing
    angles, 1/16 facing the light and facing away), under 4% RMS over the sphere.
    """
    d = np.asarray(direction, np.float64)
    if d.shape != (3,) or not np.all(np.isfinite(d)):
        raise ValueError(f"direction must be a finite 3-vector; got {direction!r}.")
    norm = np.linalg.norm(d)
    if norm < 1e-12:
        raise ValueError("direction must not be the zero vector.")
    c = np.asarray(color, np.float64)
    if c.shape != (3,):
        raise ValueError(f"color must be an RGB triple; got {color!r}.")
    coeffs = intensity * sh_basis(d / norm)
    coeffs[0] += ambient / (LAMBERT[0] * _C0)
    return c[:, None] * coeffs[None, :]


def default_sh() -> np.ndarray:
    """White ambient light with irradiance 1 everywhere, `(3, 9)`."""
    return directional_light_sh((0.0, 0.0, 1.0), intensity=0.0, ambient=1.0)
