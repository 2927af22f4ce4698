"""Synthetic occluders pasted into a UV texture map (sunglasses, hands, hair strands).

Each generator returns ``(alpha, colour)``: an (R, R) float32 coverage in {0, 1} and an
(R, R, 3) float32 colour map; ``paste`` composites them onto the visible texels of a texture.
Placement is random but reproducible: every draw comes from the ``numpy.random.Generator``
passed in (the evaluation seeds it per photo from a fixed seed and the file name).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry.rasterize import uv_to_texel
from .masks import LEFT_EYE, RIGHT_EYE

KINDS = ("sunglasses", "hand", "hair")
SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.88, 0.67, 0.52], [0.76, 0.55, 0.40], [0.55, 0.37, 0.26],
                       [0.36, 0.23, 0.16]], np.float32)
HAIR_COLOURS = np.array([[0.05, 0.04, 0.03], [0.22, 0.14, 0.08], [0.45, 0.30, 0.16], [0.80, 0.67, 0.42],
                         [0.55, 0.55, 0.55]], np.float32)


def sunglasses(model, R: int, rng: np.random.Generator):
    """A dark band across both eyes with two lenses, tinted and slightly shifted/tilted."""
    eyes = uv_to_texel(model.uv[list(RIGHT_EYE + LEFT_EYE)], R)
    cy = eyes[:, 1].mean() + rng.uniform(-0.02, 0.02) * R
    half_h = (np.ptp(eyes[:, 1]) / 2 + rng.uniform(0.03, 0.06) * R)
    x0, x1 = eyes[:, 0].min() - 0.05 * R, eyes[:, 0].max() + 0.05 * R
    img = np.zeros((R, R), np.uint8)
    for side in (RIGHT_EYE, LEFT_EYE):
        c = uv_to_texel(model.uv[list(side)], R).mean(0)
        w = (x1 - x0) * rng.uniform(0.22, 0.27)
        cv2.ellipse(img, (int(c[0]), int(cy)), (int(w), int(half_h)), float(rng.uniform(-5, 5)), 0, 360, 1, -1)
    cv2.line(img, (int(x0), int(cy - half_h * 0.5)), (int(x1), int(cy - half_h * 0.5)), 1,
             max(2, int(0.015 * R)))  # bridge and temples
    tint = np.array([0.05, 0.05, 0.06], np.float32) + rng.uniform(0, 0.12, 3).astype(np.float32)
    colour = np.broadcast_to(tint, (R, R, 3)).copy()
    return img.astype(np.float32), colour


def hand(model, R: int, rng: np.random.Generator):
    """A palm (ellipse) with four fingers (thick segments) in a skin tone, over a random part
    of the lower or middle face, with a soft shading gradient."""
    px = uv_to_texel(model.uv, R)
    x_lo, x_hi = np.percentile(px[:, 0], [15, 85])
    y_lo, y_hi = np.percentile(px[:, 1], [40, 90])
    c = np.array([rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)])
    size = rng.uniform(0.10, 0.16) * R
    angle = rng.uniform(0, 2 * np.pi)
    img = np.zeros((R, R), np.uint8)
    cv2.ellipse(img, (int(c[0]), int(c[1])), (int(size), int(size * 0.8)), float(np.degrees(angle)), 0, 360, 1, -1)
    d = np.array([np.cos(angle), np.sin(angle)])
    perp = np.array([-d[1], d[0]])
    for k, length in zip((-1.5, -0.5, 0.5, 1.5), (1.6, 1.9, 1.8, 1.4)):
        a = c + d * size * 0.6 + perp * k * size * 0.42
        b = a + d * size * length * rng.uniform(0.8, 1.1)
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, max(2, int(size * 0.32)))
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.85, 1.1)
    yy, xx = np.mgrid[0:R, 0:R].astype(np.float32)
    grad = 1.0 + 0.25 * (((xx - c[0]) * d[0] + (yy - c[1]) * d[1]) / (3 * size))
    colour = np.clip(tone[None, None, :] * grad[..., None], 0, 1).astype(np.float32)
    return img.astype(np.float32), colour


def hair(model, R: int, rng: np.random.Generator, n_strands: int | None = None):
    """Strands (thin quadratic curves) falling from the top of the face over the forehead,
    brows and eyes, in one random hair colour per draw."""
    px = uv_to_texel(model.uv, R)
    top = px[:, 1].min()
    x_lo, x_hi = np.percentile(px[:, 0], [10, 90])
    eye_y = uv_to_texel(model.uv[list(RIGHT_EYE + LEFT_EYE)], R)[:, 1].mean()
    img = np.zeros((R, R), np.uint8)
    n = int(n_strands or rng.integers(25, 45))
    centre = rng.uniform(x_lo, x_hi)
    for _ in range(n):
        x0 = centre + rng.normal(0, 0.12 * R)
        p0 = np.array([x0, top])
        p2 = np.array([x0 + rng.normal(0, 0.08 * R), rng.uniform(top + 0.2 * (eye_y - top), eye_y + 0.05 * R)])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.05 * R, 2)
        t = np.linspace(0, 1, 24)[:, None]
        curve = ((1 - t) ** 2) * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        cv2.polylines(img, [np.round(curve).astype(np.int32)], False, 1, int(rng.integers(1, 4)))
    col = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    colour = np.clip(col[None, None, :] * rng.uniform(0.8, 1.2, (R, R, 1)), 0, 1).astype(np.float32)
    return img.astype(np.float32), colour


GENERATORS = {"sunglasses": sunglasses, "hand": hand, "hair": hair}


def make_occluder(kind: str, model, R: int, rng: np.random.Generator):
    if kind not in GENERATORS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return GENERATORS[kind](model, R, rng)


def paste(texture: np.ndarray, alpha: np.ndarray, colour: np.ndarray, visible: np.ndarray):
    """Composite `colour` over `texture` where `alpha` covers a visible texel.

    Returns (occluded texture, region (R, R) bool: the texels that were covered)."""
    region = (np.asarray(alpha) > 0.5) & np.asarray(visible, bool)
    out = np.where(region[..., None], colour, texture).astype(np.float32)
    return out, region
