"""Photo-level perturbations for the consistency metric: the same photo as a different camera,
exposure or compression would have taken it (docs/EVALUATION.md, photo consistency).

Every function takes and returns an (H, W, 3) uint8 RGB photo (a new array). Exposure, white
balance and the cast shadow act in linear light (sRGB decoded, scaled, encoded again, clipped);
gamma acts on the encoded values. Randomness (white-balance gains, the shadow's direction) comes
from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Perturbation names, in the order they are scored.
PERTURBATIONS = ("exposure_0.7", "exposure_1.3", "white_balance", "gamma_0.8", "gamma_1.25", "jpeg_30",
                 "half_size", "shadow")
#: Light left in the cast shadow (linear), and the width of its soft edge as a fraction of the face.
SHADOW_TRANSMISSION = 0.35
SHADOW_SOFTNESS = 0.06


def srgb_to_linear(u8: np.ndarray) -> np.ndarray:
    c = np.asarray(u8, np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(lin, np.float32), 0.0, 1.0)
    s = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.clip(np.round(s * 255.0), 0, 255).astype(np.uint8)


def exposure(image: np.ndarray, factor: float) -> np.ndarray:
    """Linear light times `factor` (x0.7 under-, x1.3 over-exposed; highlights clip)."""
    return linear_to_srgb(srgb_to_linear(image) * float(factor))


def white_balance(image: np.ndarray, gains) -> np.ndarray:
    """Linear light times per-channel `gains` (r, g, b)."""
    return linear_to_srgb(srgb_to_linear(image) * np.asarray(gains, np.float32)[None, None, :])


def gamma(image: np.ndarray, g: float) -> np.ndarray:
    """Encoded values (0..1) to the power `g`."""
    c = np.asarray(image, np.float32) / 255.0
    return np.clip(np.round(np.power(c, float(g)) * 255.0), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 30) -> np.ndarray:
    """Encoded as a JPEG of `quality` and decoded again."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def half_size(image: np.ndarray) -> np.ndarray:
    """Downscaled to half size (area averaging) and back to the original size (bilinear)."""
    H, W = image.shape[:2]
    small = cv2.resize(image, (max(1, W // 2), max(1, H // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def shadow_factor(shape, centre, direction_deg: float, face_size: float,
                  transmission: float = SHADOW_TRANSMISSION, softness: float = SHADOW_SOFTNESS) -> np.ndarray:
    """(H, W) float32 light factor of a straight soft-edged cast shadow: `transmission` on the
    side of the line through `centre` that `direction_deg` points to, 1 on the other side, a
    logistic edge `softness` x `face_size` wide."""
    H, W = shape[:2]
    n = np.array([np.cos(np.radians(direction_deg)), np.sin(np.radians(direction_deg))])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    s = ((xx + 0.5 - centre[0]) * n[0] + (yy + 0.5 - centre[1]) * n[1]) / max(softness * face_size, 1e-3)
    inside = 1.0 / (1.0 + np.exp(-np.clip(s, -50, 50)))
    return (1.0 - (1.0 - transmission) * inside).astype(np.float32)


def cast_shadow(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft cast shadow over half the face: the line through the face centre (mean of the 468
    mesh points) at a random angle, the shadowed side at SHADOW_TRANSMISSION of the light."""
    p = np.asarray(points, np.float64)[:468, :2]
    size = float(np.sqrt(max(np.ptp(p[:, 0]), 1.0) * max(np.ptp(p[:, 1]), 1.0)))
    f = shadow_factor(image.shape, p.mean(0), rng.uniform(0, 360), size)
    return linear_to_srgb(srgb_to_linear(image) * f[..., None])


def random_white_balance(rng: np.random.Generator) -> np.ndarray:
    """Gains (r, g, b): warmer or cooler by 10-20 % (red up and blue down, or the reverse)."""
    k = rng.uniform(0.10, 0.20) * (1 if rng.random() < 0.5 else -1)
    return np.array([1 + k, 1.0, 1 - k], np.float32)


def perturb(image: np.ndarray, name: str, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photo `image` under perturbation `name` (one of PERTURBATIONS); `points` are the face's
    landmarks (pixels), used by the shadow."""
    if name == "exposure_0.7":
        return exposure(image, 0.7)
    if name == "exposure_1.3":
        return exposure(image, 1.3)
    if name == "white_balance":
        return white_balance(image, random_white_balance(rng))
    if name == "gamma_0.8":
        return gamma(image, 0.8)
    if name == "gamma_1.25":
        return gamma(image, 1.25)
    if name == "jpeg_30":
        return jpeg(image, 30)
    if name == "half_size":
        return half_size(image)
    if name == "shadow":
        return cast_shadow(image, points, rng)
    raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {name!r}")
