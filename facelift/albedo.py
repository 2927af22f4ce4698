"""Low-frequency albedo (eq. 2) and SH lighting (eq. 3) by least squares.

Used when a bundle ships no B-Net, and as the B-Net's closed-form reference: alternate
the SH estimate given the albedo with the PCA coefficients given the shading; the
ridge term is the prior w_a * ||p_a||^2 of eq. 4.

`fit_low_frequency` is the robust version the pipeline uses: iteratively reweighted least
squares with Tukey's biweight on the texels' residuals, so that occluders, hair, glasses
and highlights, which the low-frequency model cannot explain, stop pulling the fit. Its
per-texel weight is the skin confidence (`skin_confidence`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ._blas import one_blas_thread
from .face_model import FaceModel
from .geometry.sh import LAMBERT, SHFit, estimate_sh, irradiance, sh_basis


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


def _sample_texels(maps: np.ndarray, resolution: int, flat_index: np.ndarray, rows=None) -> np.ndarray:
    """(..., A, A) maps at N output texels as (N, L), L = the product of the leading axes.
    `rows`: the same maps already laid out as (A*A, L) (e.g. FaceModel.albedo_texel_rows)."""
    A = maps.shape[-1]
    texels = np.asarray(maps, np.float32).reshape(-1, A * A).T if rows is None else rows  # one row per texel
    return _bilinear_matrix(A, resolution, flat_index) @ texels


def _bilinear_matrix(A: int, resolution: int, flat_index: np.ndarray) -> sp.csr_matrix:
    """(N, A*A) sparse matrix of the bilinear weights (4 per row) that resample an A x A map at
    the N texels `flat_index` of a resolution x resolution one (interpolate's align_corners=False)."""
    rows, cols = np.divmod(np.asarray(flat_index, np.int64), resolution)

    def taps(i):
        x = np.maximum((i + 0.5) * (A / resolution) - 0.5, 0.0)
        i0 = np.minimum(np.floor(x).astype(np.int64), A - 1)
        return i0, np.minimum(i0 + 1, A - 1), (x - i0).astype(np.float32)

    r0, r1, fr = taps(rows)
    c0, c1, fc = taps(cols)
    n = len(rows)
    index = np.stack([r0 * A + c0, r0 * A + c1, r1 * A + c0, r1 * A + c1], 1).ravel()
    weight = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], 1).ravel()
    return sp.csr_matrix((weight, index, np.arange(0, 4 * n + 1, 4)), shape=(n, A * A))


@one_blas_thread
def pca_albedo(model: FaceModel, coefficients: np.ndarray | None, resolution: int) -> np.ndarray:
    """The PCA albedo for `coefficients` as an (R, R, 3) map in [0, 1]."""
    return resize_maps(model.albedo_map(coefficients), resolution)


@one_blas_thread
def fit_albedo_and_light(model: FaceModel, texture: np.ndarray, normals: np.ndarray, visible: np.ndarray, *,
                         prior_weight: float = 1e-5, light_prior: float = 1.0, iterations: int = 3,
                         stride: int = 8):
    """PCA coefficients (K,), PCA albedo map (R, R, 3) and SH (3, 9) explaining `texture`.

    `texture`, `normals` (R, R, 3) and `visible` (R, R) bool are UV maps. The coefficients
    minimise mean((texture - albedo * shading)^2) + prior_weight * ||p||^2 over every
    `stride`-th visible texel (plenty for a low-frequency model). When the albedo model was
    learned under white light (`model.light_brightness`), the lighting carries the same prior
    with weight `light_prior` (`geometry.sh.light_prior`), so skin tone goes to the albedo.
    """
    R = texture.shape[0]
    vis = np.asarray(visible, bool)
    if vis.sum() < 9:
        raise ValueError("Too few visible texels to estimate the lighting.")
    if not model.n_albedo:
        coeffs = np.zeros(0, np.float32)
        albedo = pca_albedo(model, coeffs, R)
        prior = _light_prior_args(model, light_prior)
        return coeffs, albedo, estimate_sh(texture[vis], albedo[vis], normals[vis], **prior).astype(np.float32)
    sub = np.flatnonzero(vis.reshape(-1))[::stride]
    problem = _Subsample(model, texture, normals, sub)
    coeffs, sh = problem.solve(None, prior_weight, light_prior, iterations)
    albedo = pca_albedo(model, coeffs, R)
    prior = _light_prior_args(model, light_prior)
    sh = estimate_sh(texture[vis], albedo[vis], normals[vis], **prior)  # the final light from every visible texel
    return coeffs, albedo, sh.astype(np.float32)


def _light_prior_args(model: FaceModel, light_prior: float) -> dict:
    if model.light_brightness is not None and light_prior > 0:
        return {"colour_prior": light_prior, "brightness": model.light_brightness, "brightness_prior": light_prior}
    return {}


class _Subsample:
    """The eq.-4 least-squares problem on a subset of texels (flat indices `sub`)."""

    def __init__(self, model: FaceModel, texture: np.ndarray, normals: np.ndarray, sub: np.ndarray):
        R = texture.shape[0]
        self.model = model
        self.tex = texture.reshape(-1, 3).take(sub, axis=0).astype(np.float64)  # take: ~4x row indexing
        self.nrm = normals.reshape(-1, 3).take(sub, axis=0)
        self.mean = np.clip(sample_maps(model.albedo_mean, R, sub), 0, 1)
        K = model.n_albedo
        basis = _sample_texels(model.albedo_basis, R, sub, rows=model.albedo_texel_rows).reshape(len(sub), K, 3)
        self.basis = np.ascontiguousarray(basis.transpose(2, 0, 1))  # (3, N, K): one block per channel
        self._leading: dict[int, np.ndarray] = {}  # k -> the first k components, contiguous
        self.sh_fit = SHFit(self.nrm)  # the normals do not change: their SH basis products serve every solve
        self.sh_basis = self.sh_fit.basis

    def shading(self, sh: np.ndarray) -> np.ndarray:
        return self.sh_basis @ np.asarray(sh, np.float64).T  # irradiance(self.nrm, sh)

    def light(self, albedo: np.ndarray, weights, prior: dict) -> np.ndarray:
        return self.sh_fit(self.tex, albedo, weights=weights, **prior)

    def albedo(self, coeffs: np.ndarray) -> np.ndarray:
        nz = np.flatnonzero(coeffs)
        k = int(nz[-1]) + 1 if nz.size else 0  # the stiff model uses the first few components only
        return np.clip(self.mean + (self.basis[:, :, :k] @ coeffs[:k]).T, 0, 1)

    def residual(self, coeffs: np.ndarray, sh: np.ndarray) -> np.ndarray:
        """|texture - albedo * shading| per texel (RMS over RGB), (N,)."""
        return _rms(self.tex - self.albedo(coeffs) * self.shading(sh))

    def solve(self, weights, prior_weight: float, light_prior: float, iterations: int, coeffs=None, sh=None,
              n_components: int | None = None):
        """Alternate SH and PCA coefficients, `iterations` times, under per-texel `weights`; only
        the first `n_components` components are free (the others stay 0)."""
        K = self.model.n_albedo
        k = K if n_components is None else min(int(n_components), K)
        prior = _light_prior_args(self.model, light_prior)
        w = np.ones(len(self.tex)) if weights is None else np.asarray(weights, np.float64)
        if sh is None:
            sh = self.light(self.mean if coeffs is None else self.albedo(coeffs), w, prior)
        if k not in self._leading:
            self._leading[k] = np.ascontiguousarray(self.basis[:, :, :k])
        basis = self._leading[k]
        root_w = np.sqrt(w)
        for _ in range(iterations):
            shading = self.shading(sh)
            # the weighted normal equations as X^T X (numpy takes the symmetric product, half the work),
            # summed in float32: twice as fast, the fit the same to 1e-6 (the prior keeps them well posed)
            x = (basis * (shading.T * root_w)[:, :, None].astype(np.float32)).reshape(-1, k)  # (3N, k)
            y = ((self.tex - self.mean * shading).T * root_w).reshape(-1).astype(np.float32)
            lhs = (x.T @ x).astype(np.float64)
            rhs = (x.T @ y).astype(np.float64)
            n = 3 * w.sum()
            coeffs = np.zeros(K, np.float32)
            coeffs[:k] = np.linalg.solve(lhs / n + prior_weight * np.eye(k), rhs / n)
            sh = self.light(self.albedo(coeffs), w, prior)
        return coeffs, sh


#: Tukey's biweight tuning constant (95 % efficiency under Gaussian noise).
TUKEY_C = 4.685
#: Smallest residual scale the robust fit assumes: JPEG noise and skin texture that a
#: low-frequency albedo cannot explain are about this large on clean skin.
MIN_RESIDUAL_SCALE = 0.02


def tukey_weight(residual, scale):
    """Tukey's biweight (1 - (r / (c s))^2)^2 for |r| < c s, else 0 (numpy or torch)."""
    u = residual / (TUKEY_C * scale)
    inside = (u * u) < 1
    w = (1 - u * u) ** 2
    return w * inside


def _rms(d):
    """RMS over the last axis of (..., 3) colours (numpy or torch): (...). Written out: numpy's
    reductions over an axis of three are ~5x slower."""
    return ((d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]) / 3) ** 0.5


@dataclass
class LowFrequencyFit:
    """The robust low-frequency stage's result, all UV maps at the texture's resolution."""

    coefficients: np.ndarray  # (K,) PCA albedo coefficients (eq. 2)
    albedo: np.ndarray  # (R, R, 3) PCA albedo in [0, 1]
    sh: np.ndarray  # (3, 9) SH lighting (eq. 3)
    confidence: np.ndarray  # (R, R) float32 in [0, 1]: how well the model explains each texel; 0 where unseen
    scale: float  # robust residual scale (RMS over RGB) the confidence is measured against
    outlier_coefficients: np.ndarray  # (K,) the stiff model the outliers (and the confidence) are found with
    outlier_sh: np.ndarray  # (3, 9) its lighting
    albedo_stiff: np.ndarray | None = None  # (R, R, 3) PCA albedo of outlier_coefficients, when computed


def skin_confidence(texture, albedo, shading, visible, scale: float):
    """Per-texel skin confidence (R, R): Tukey's weight of |texture - albedo * shading| (RMS over
    RGB) against the robust residual scale, zero where not visible. numpy or torch, batched
    over leading dimensions (`scale` then broadcasts, e.g. (B, 1, 1))."""
    return tukey_weight(_rms(texture - albedo * shading), scale) * visible


@one_blas_thread
def fit_low_frequency(model: FaceModel, texture: np.ndarray, normals: np.ndarray, visible: np.ndarray, *,
                      prior_weight: float = 1e-5, light_prior: float = 1.0, iterations: int = 3,
                      reweightings: int = 6, outlier_components: int = 10, robust_prior_weight: float = 3e-4,
                      stride: int = 12, final_stride: int = 4) -> LowFrequencyFit:
    """Robust PCA albedo + SH lighting: `fit_albedo_and_light`, then `reweightings` rounds of
    iteratively reweighted least squares (Tukey's biweight on each texel's residual, scale
    1.4826 x the median residual, at least MIN_RESIDUAL_SCALE), so that what the low-frequency
    model cannot explain (occluders, hair, glasses, highlights) stops dragging the fit.

    The light is re-estimated at the end from every `final_stride`-th visible texel under the
    final weights; the confidence map is the weight of every texel (`skin_confidence`)."""
    R = texture.shape[0]
    vis = np.asarray(visible, bool)
    if vis.sum() < 9:
        raise ValueError("Too few visible texels to estimate the lighting.")
    prior = _light_prior_args(model, light_prior)
    flat_vis = np.flatnonzero(vis.reshape(-1))
    if not model.n_albedo:
        coeffs = np.zeros(0, np.float32)
        albedo = pca_albedo(model, coeffs, R)
        sh = estimate_sh(texture[vis], albedo[vis], normals[vis], **prior)
        shading = irradiance(normals, sh)
        r = _rms(texture - albedo * shading)[vis]
        scale = max(1.4826 * float(np.median(r)), MIN_RESIDUAL_SCALE)
        conf = skin_confidence(texture, albedo, shading, vis, scale).astype(np.float32)
        return LowFrequencyFit(coeffs, albedo, sh.astype(np.float32), conf, scale, coeffs, sh.astype(np.float32))
    problem = _Subsample(model, texture, normals, flat_vis[::stride])
    # Outliers are found against a stiff model (the first `outlier_components` components under a
    # strong prior, which cannot bend towards an occluder); the final albedo is the full model's
    # fit under those weights.
    k = outlier_components
    coeffs, sh = problem.solve(None, robust_prior_weight, light_prior, iterations, n_components=k)
    scale, w = MIN_RESIDUAL_SCALE, None
    for _ in range(reweightings):
        r = problem.residual(coeffs, sh)
        inliers = r if w is None or not (w > 0).any() else r[w > 0]  # outliers must not inflate the scale
        scale = max(1.4826 * float(np.median(inliers)), MIN_RESIDUAL_SCALE)
        w = tukey_weight(r, scale)
        if w.sum() < 9:
            w = None
            break
        coeffs, sh = problem.solve(w, robust_prior_weight, light_prior, 1, coeffs=coeffs, sh=sh, n_components=k)
    stiff_coeffs, stiff_sh = coeffs, sh
    coeffs, sh = problem.solve(w, prior_weight, light_prior, 2, coeffs=coeffs, sh=sh)
    albedo = pca_albedo(model, coeffs, R)
    final = flat_vis[::final_stride]
    tex_f, alb_f, nrm_f = (m.reshape(-1, 3).take(final, axis=0) for m in (texture, albedo, normals))
    basis_f = sh_basis(nrm_f) * LAMBERT  # one SH basis for the residuals and the light
    w = tukey_weight(_rms(tex_f - alb_f * (basis_f @ np.asarray(sh, np.float64).T)), scale)
    if w.sum() >= 9:
        sh = estimate_sh(tex_f, alb_f, nrm_f, weights=w, basis=basis_f, **prior)
    # the confidence at the visible texels only (it is 0 elsewhere)
    stiff = pca_albedo(model, stiff_coeffs, R).astype(np.float32)
    conf = np.zeros(R * R, np.float32)
    tex_v, stiff_v, nrm_v = (m.reshape(-1, 3).take(flat_vis, axis=0) for m in (texture, stiff, normals))
    conf[flat_vis] = skin_confidence(tex_v, stiff_v, irradiance(nrm_v, stiff_sh), 1.0, scale)
    conf = conf.reshape(R, R)
    return LowFrequencyFit(coeffs, albedo, np.asarray(sh, np.float32), conf, float(scale),
                           np.asarray(stiff_coeffs, np.float32), np.asarray(stiff_sh, np.float32), stiff)


def stiff_pca_albedo(model: FaceModel, low: LowFrequencyFit, resolution: int) -> np.ndarray:
    """The stiff model's PCA albedo (R, R, 3): the few components the outliers are found with,
    under a strong prior, so an occluder moves it less than the final albedo."""
    if low.albedo_stiff is not None and low.albedo_stiff.shape[0] == resolution:
        return low.albedo_stiff
    return pca_albedo(model, low.outlier_coefficients, resolution).astype(np.float32)


def delit_texture(texture: np.ndarray, shading: np.ndarray, visible: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """texture / shading (the albedo the photo shows under the estimated light), clipped to
    [0, 1], zero where not visible or too dark to divide by; (R, R, 3) maps, `visible` (R, R)."""
    ok = ((shading[..., 0] > floor) & (shading[..., 1] > floor) & (shading[..., 2] > floor)
          & (np.asarray(visible) > 0.5))[..., None]
    return np.clip(texture / np.maximum(shading, floor), 0, 1) * ok


def confidence_for(texture: np.ndarray, albedo: np.ndarray, normals: np.ndarray, sh: np.ndarray,
                   visible: np.ndarray) -> tuple[np.ndarray, float]:
    """(skin confidence (R, R), scale) of a given albedo and light (e.g. the B-Net's), with the
    robust residual scale measured on the visible texels as in `fit_low_frequency`."""
    vis = np.asarray(visible, bool)
    shading = irradiance(normals, sh)
    r = _rms(texture - albedo * shading)[vis]
    scale = max(1.4826 * float(np.median(r)), MIN_RESIDUAL_SCALE) if r.size else MIN_RESIDUAL_SCALE
    return skin_confidence(texture, albedo, shading, vis, scale).astype(np.float32), scale


def network_sources(texture: np.ndarray, visibility: np.ndarray, normals: np.ndarray,
                    low: LowFrequencyFit, stiff_albedo: np.ndarray | None = None) -> dict:
    """The (R, R, C) UV maps a U-Net may be fed (facelift.models.UV_INPUTS), from the unwrapped
    texture, visibility and normals and the low-frequency stage's fit ("albedo_fan", the FAN's
    output, is added by the pipeline once the FAN has run; "albedo_stiff", the PCA albedo of
    `low.outlier_coefficients`, only when given as `stiff_albedo`: `stiff_pca_albedo`)."""
    visible = (np.asarray(visibility) > 0.5).astype(np.float32)
    shading = irradiance(normals, low.sh).astype(np.float32)
    sources = {"texture": texture, "visibility": visible[..., None], "confidence": low.confidence[..., None],
               "albedo_pca": low.albedo, "delit": delit_texture(texture, shading, visible).astype(np.float32),
               "shading": shading}
    if stiff_albedo is not None:
        sources["albedo_stiff"] = stiff_albedo
    return sources


#: Largest mean spread between a visible texel's colour channels (in [0, 1]) of a photo taken as
#: greyscale (a black-and-white photo saved as RGB has 0; JPEG chroma noise stays below this).
GREY_SPREAD = 2.0 / 255
#: Largest median distance (in [0, 1]) of a visible texel's colour from the colour its brightness
#: has in the photo, for a toned monochrome photo (sepia, cyanotype, split-toned). Of 9,766 UTKFace
#: training textures, the 110 black-and-white ones and 20 toned ones lie below, and no colour photo:
#: the least colourful (a pale baby) is at 1.62/255, some sepia prints up to about 2/255 are missed.
TONED_RESIDUAL = 1.5 / 255
TONED_BINS = 16
TONED_SAMPLES = 4096


def toned_residual(colours: np.ndarray) -> float:
    """How far (N, 3) colours are from a toned monochrome image, in which colour is a function of
    brightness alone: the median over texels of max-channel |c - Y * tone(Y)|, tone(Y) the mean
    colour per unit luminance of the texels of about the same luminance Y (16 bins). 0 for grey
    or sepia-toned colours."""
    c = np.asarray(colours, np.float32).reshape(-1, 3)
    if not len(c):
        raise ValueError("toned_residual needs at least one colour")
    y = c @ np.array([0.299, 0.587, 0.114], np.float32)
    bins = np.clip((y * TONED_BINS).astype(np.int64), 0, TONED_BINS - 1)
    per_luminance = c / np.maximum(y[:, None], 1e-3)
    count = np.maximum(np.bincount(bins, minlength=TONED_BINS), 1).astype(np.float32)
    tone = np.stack([np.bincount(bins, per_luminance[:, k], minlength=TONED_BINS) for k in range(3)], -1)
    tone = tone / count[:, None]
    return float(np.median(np.abs(c - y[:, None] * tone[bins]).max(-1)))


def is_greyscale(texture: np.ndarray, visible: np.ndarray) -> bool:
    """True when the visible texels of `texture` (R, R, 3) carry no colour of their own: a
    black-and-white photo, or a toned one (sepia, cyanotype) whose colour follows brightness alone."""
    vis = np.asarray(visible, bool)
    if not vis.any():
        return False
    t = np.asarray(texture, np.float32).reshape(-1, 3).take(np.flatnonzero(vis), axis=0)
    spread = np.maximum(np.maximum(t[:, 0], t[:, 1]), t[:, 2]) - np.minimum(np.minimum(t[:, 0], t[:, 1]), t[:, 2])
    if float(spread.mean()) <= GREY_SPREAD:
        return True
    step = max(1, len(t) // TONED_SAMPLES)  # an even subsample: well under a millisecond
    return toned_residual(t[::step]) <= TONED_RESIDUAL


def grey(uv_map: np.ndarray) -> np.ndarray:
    """(..., 3) colours -> their Rec. 601 luminance in all three channels."""
    y = np.asarray(uv_map, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(y[..., None], 3, -1)



def colourise(texture: np.ndarray, visible: np.ndarray, mean_albedo: np.ndarray) -> np.ndarray:
    """A black-and-white texture given the face model's mean skin colour: its luminance times the
    mean albedo's colour at that texel (normalised to luminance 1). The networks, trained on colour
    photos, take a grey face for an occluder; they see this one, and their albedo is made grey again."""
    lum = grey(mean_albedo)[..., :1]
    chroma = np.where(lum > 1e-3, np.asarray(mean_albedo, np.float32) / np.maximum(lum, 1e-3), 1.0)
    out = np.clip(grey(texture) * chroma, 0, 1) * (np.asarray(visible, np.float32)[..., None] > 0.5)
    return out.astype(np.float32)


def greyscale_fit(low: LowFrequencyFit) -> LowFrequencyFit:
    """The low-frequency fit of a black-and-white photo without colours the photo does not hold:
    a white light (the three channels' mean SH) and a grey PCA albedo (`colourise`)."""
    sh = np.repeat(np.asarray(low.sh, np.float32).mean(0, keepdims=True), 3, 0)
    return dataclasses.replace(low, albedo=grey(low.albedo), sh=sh)
