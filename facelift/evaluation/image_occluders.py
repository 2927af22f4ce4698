"""Synthetic occluders drawn into the *photo* (image space), placed from the face's 2D landmarks.

Where `occluders.py` pastes occluders into the UV texture (the pipeline's input after the
unwrap), these are drawn over the photo itself, so that the whole pipeline (landmarks, fit,
unwrap, low-frequency stage, FAN) sees them, as it would a real hand, phone or pair of
sunglasses. Kinds:

- ``sunglasses``: two dark, tinted lenses over the eyes (sized from each eye's contour, turned
  with the eye line), a bridge and temples, a vertical shading gradient;
- ``hand``: a palm (ellipse) with four fingers in a skin tone with a shading gradient, over a
  random point of the middle/lower face (mouth, cheeks, chin);
- ``phone``: a dark rounded rectangle with a lighter rim, held against one cheek and tilted.

Beyond the scored ``KINDS`` (so the reported figures stay comparable across versions), ``EXTRA_KINDS``:

- ``microphone``: a handheld microphone in front of the mouth, a dark mesh ball with a faint
  highlight and its black handle going down;
- ``eyeglasses``: clear glasses, only their thin frames (round, oval or rectangular rims, a
  bridge, temples) in black, brown, grey or gold: an occluder a few pixels wide that the
  robust stage and the networks can mistake for the eyes' own lines.

Each generator returns an `ImageOccluder`: coverage `alpha` in [0, 1] and `colour` in [0, 1]
on the smallest box holding it (photos can be large), at offset (x0, y0). `paste` composites it
onto a uint8 photo; `uv_coverage` maps its coverage onto the UV layout through a fit (each
texel's camera-space point projected with the weak-perspective camera, as the unwrap does).
Placement is random but reproducible: every draw comes from the ``numpy.random.Generator``
passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .masks import LEFT_EYE, RIGHT_EYE
from .occluders import SKIN_TONES

KINDS = ("sunglasses", "hand", "phone")
EXTRA_KINDS = ("microphone", "eyeglasses")
#: MediaPipe vertices of the lips' inner edge, upper and lower: a microphone is centred between them.
MOUTH_CENTRE = (13, 14)
#: MediaPipe vertices a hand may be centred on: mouth corners, upper lip, chin, cheeks, jaw.
HAND_ANCHORS = (61, 291, 0, 17, 152, 50, 280, 205, 425, 172, 397)
#: Outer cheek vertices a phone is held against (right and left side of the face).
PHONE_ANCHORS = (234, 454)
_SS = 4  # sub-pixel bits of cv2's drawing (shift)


@dataclass
class ImageOccluder:
    """Coverage (h, w) float32 in [0, 1] and colour (h, w, 3) float32 in [0, 1] of an occluder,
    placed at column x0, row y0 of a photo of shape `shape` (H, W)."""

    alpha: np.ndarray
    colour: np.ndarray
    x0: int
    y0: int
    shape: tuple

    def full_alpha(self) -> np.ndarray:
        """(H, W) float32 coverage on the whole photo."""
        out = np.zeros(self.shape[:2], np.float32)
        h, w = self.alpha.shape
        out[self.y0:self.y0 + h, self.x0:self.x0 + w] = self.alpha
        return out


def _face_size(points: np.ndarray) -> float:
    """sqrt(w h) of the box of the 468 mesh points: the face's size in pixels."""
    p = np.asarray(points, np.float64)[:468, :2]
    return float(np.sqrt(max(np.ptp(p[:, 0]), 1.0) * max(np.ptp(p[:, 1]), 1.0)))


def _pt(p) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SS))), int(round(p[1] * (1 << _SS)))


def _ellipse(img, centre, axes, angle_deg):
    cv2.ellipse(img, _pt(centre), (int(round(axes[0] * (1 << _SS))), int(round(axes[1] * (1 << _SS)))),
                float(angle_deg), 0, 360, 255, -1, cv2.LINE_AA, _SS)


def _line(img, a, b, thickness):
    cv2.line(img, _pt(a), _pt(b), 255, max(1, int(round(thickness))), cv2.LINE_AA, _SS)


def _crop(mask: np.ndarray, colour_fn, shape) -> ImageOccluder:
    """The occluder on the bounding box of `mask` (uint8, 0..255); `colour_fn(xx, yy)` gives the
    (h, w, 3) colour at photo pixel coordinates xx, yy."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return ImageOccluder(np.zeros((0, 0), np.float32), np.zeros((0, 0, 3), np.float32), 0, 0, tuple(shape[:2]))
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    alpha = mask[y0:y1, x0:x1].astype(np.float32) / 255.0
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    colour = np.clip(colour_fn(xx + 0.5, yy + 0.5), 0, 1).astype(np.float32)
    return ImageOccluder(alpha, colour, x0, y0, tuple(shape[:2]))


def _eye_line(points: np.ndarray):
    """(the two eyes' contour points, their centres, the distance d between the centres, the unit
    vector u from the right eye's centre to the left's, the unit perpendicular v pointing down the
    face in an upright photo)."""
    p = np.asarray(points, np.float64)[:, :2]
    eyes = [p[list(RIGHT_EYE)], p[list(LEFT_EYE)]]
    centres = [e.mean(0) for e in eyes]
    axis = centres[1] - centres[0]
    d = max(float(np.linalg.norm(axis)), 1.0)
    u = axis / d
    v = np.array([-u[1], u[0]])
    return eyes, centres, d, u, (-v if v[1] < 0 else v)


def sunglasses(shape, points: np.ndarray, rng: np.random.Generator) -> ImageOccluder:
    """Dark lenses over both eyes, a bridge between them and temples towards the ears."""
    eyes, centres, d, u, v = _eye_line(points)
    angle = float(np.degrees(np.arctan2(u[1], u[0])))
    mask = np.zeros(shape[:2], np.uint8)
    scale_w, scale_h = rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.7)
    drop = rng.uniform(0.0, 0.15)
    lens = []
    for e, c in zip(eyes, centres):
        width = max(float(np.ptp((e - c) @ u)), 0.2 * d)  # this eye's width along the eye line
        cc = c + v * drop * width
        a, b = scale_w * width, scale_h * width
        _ellipse(mask, cc, (a, b), angle)
        lens.append((cc, a, b))
    (c_r, a_r, b_r), (c_l, a_l, b_l) = lens
    top = -0.45
    _line(mask, c_r + u * a_r * 0.9 + v * top * b_r, c_l - u * a_l * 0.9 + v * top * b_l, 0.05 * d)  # bridge
    _line(mask, c_r - u * a_r * 0.95 + v * top * b_r, c_r - u * (a_r + 0.35 * d) + v * top * b_r, 0.05 * d)
    _line(mask, c_l + u * a_l * 0.95 + v * top * b_l, c_l + u * (a_l + 0.35 * d) + v * top * b_l, 0.05 * d)
    tint = np.array([0.04, 0.04, 0.05]) + rng.uniform(0, 0.10, 3)
    mid = (c_r + c_l) / 2
    span = 2.0 * max(b_r, b_l, 1.0)

    def colour(xx, yy):
        t = ((xx - mid[0]) * v[0] + (yy - mid[1]) * v[1]) / span  # -0.5 top .. 0.5 bottom
        return tint[None, None, :] * (1.0 + 0.8 * np.clip(t + 0.5, 0, 1))[..., None]

    return _crop(mask, colour, shape)


def hand(shape, points: np.ndarray, rng: np.random.Generator) -> ImageOccluder:
    """A palm with four fingers in a skin tone over the middle or lower face."""
    p = np.asarray(points, np.float64)[:, :2]
    S = _face_size(p)
    c = p[HAND_ANCHORS[int(rng.integers(len(HAND_ANCHORS)))]] + rng.normal(0, 0.04 * S, 2)
    size = rng.uniform(0.13, 0.18) * S
    theta = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(theta), np.sin(theta)])
    perp = np.array([-d[1], d[0]])
    mask = np.zeros(shape[:2], np.uint8)
    _ellipse(mask, c, (size, size * 0.8), np.degrees(theta))
    for k, length in zip((-1.5, -0.5, 0.5, 1.5), (1.6, 1.9, 1.8, 1.4)):
        a = c + d * size * 0.6 + perp * k * size * 0.42
        b = a + d * size * length * rng.uniform(0.8, 1.1)
        _line(mask, a, b, size * 0.32)
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.85, 1.1)

    def colour(xx, yy):
        grad = 1.0 + 0.25 * (((xx - c[0]) * d[0] + (yy - c[1]) * d[1]) / (3 * size))
        return tone[None, None, :] * grad[..., None]

    return _crop(mask, colour, shape)


def phone(shape, points: np.ndarray, rng: np.random.Generator) -> ImageOccluder:
    """A dark phone (rounded rectangle, lighter rim) held against one cheek, tilted."""
    p = np.asarray(points, np.float64)[:, :2]
    S = _face_size(p)
    centre_face = p[:468].mean(0)
    edge = p[PHONE_ANCHORS[int(rng.integers(len(PHONE_ANCHORS)))]]
    c = edge + (centre_face - edge) * rng.uniform(0.15, 0.35) + np.array([0.0, rng.uniform(0.0, 0.15) * S])
    half_w, half_h = rng.uniform(0.12, 0.16) * S, rng.uniform(0.26, 0.32) * S
    tilt = np.radians(rng.uniform(-25, 25))
    u = np.array([np.cos(tilt), np.sin(tilt)])
    v = np.array([-u[1], u[0]])
    r = 0.25 * half_w  # corner radius
    mask = np.zeros(shape[:2], np.uint8)
    corners = [c + sx * (half_w - r) * u + sy * (half_h - r) * v for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    poly = np.array([_pt(q) for q in (c - half_w * u - (half_h - r) * v, c - half_w * u + (half_h - r) * v,
                                      c - (half_w - r) * u + half_h * v, c + (half_w - r) * u + half_h * v,
                                      c + half_w * u + (half_h - r) * v, c + half_w * u - (half_h - r) * v,
                                      c + (half_w - r) * u - half_h * v, c - (half_w - r) * u - half_h * v)],
                    np.int32)
    cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, _SS)
    for q in corners:
        _ellipse(mask, q, (r, r), 0)
    body = np.array([0.06, 0.06, 0.07]) + rng.uniform(0, 0.08)
    rim = body + 0.25

    def colour(xx, yy):
        du = np.abs((xx - c[0]) * u[0] + (yy - c[1]) * u[1]) / half_w
        dv = np.abs((xx - c[0]) * v[0] + (yy - c[1]) * v[1]) / half_h
        on_rim = (np.maximum(du, dv) > 0.9)[..., None]
        return np.where(on_rim, rim[None, None, :], body[None, None, :]) * np.ones_like(xx)[..., None]

    return _crop(mask, colour, shape)


def microphone(shape, points: np.ndarray, rng: np.random.Generator) -> ImageOccluder:
    """A dark mesh ball in front of the mouth (a faint highlight up and to one side) on a black handle
    going down, tilted up to 35 degrees."""
    p = np.asarray(points, np.float64)[:, :2]
    S = _face_size(p)
    c = p[list(MOUTH_CENTRE)].mean(0) + rng.normal(0, 0.02 * S, 2)
    r = rng.uniform(0.12, 0.17) * S
    theta = np.radians(90 + rng.uniform(-35, 35))
    d = np.array([np.cos(theta), np.sin(theta)])
    mask = np.zeros(shape[:2], np.uint8)
    _ellipse(mask, c, (r, r), 0)
    _line(mask, c + d * 0.8 * r, c + d * (r + rng.uniform(0.35, 0.6) * S), 0.5 * r)
    grey = rng.uniform(0.10, 0.22)
    pitch = r / rng.uniform(3.0, 5.0)  # the grille's cell size
    glint = c + r * 0.45 * np.array([rng.choice([-1.0, 1.0]), -1.0])

    def colour(xx, yy):
        ball = (np.hypot(xx - c[0], yy - c[1]) <= 1.02 * r)[..., None]
        grille = 0.06 * (np.sin(np.pi * (xx - c[0]) / pitch) * np.sin(np.pi * (yy - c[1]) / pitch) > 0)
        light = 0.3 * np.exp(-((xx - glint[0]) ** 2 + (yy - glint[1]) ** 2) / (0.3 * r) ** 2)
        head = (grey + grille + light)[..., None] * np.ones(3)
        return np.where(ball, head, np.array([0.04, 0.04, 0.045]))

    return _crop(mask, colour, shape)


#: Frame colours of `eyeglasses`: black, dark brown, grey metal, gold metal.
FRAME_COLOURS = np.array([[0.05, 0.05, 0.06], [0.22, 0.13, 0.08], [0.45, 0.46, 0.48], [0.62, 0.50, 0.25]])


def eyeglasses(shape, points: np.ndarray, rng: np.random.Generator) -> ImageOccluder:
    """Clear glasses: thin rims around both eyes (round, oval or rectangular), a bridge and temples;
    the lenses leave the eyes uncovered."""
    eyes, centres, d, u, v = _eye_line(points)
    thickness = max(1.0, rng.uniform(0.025, 0.06) * d)
    style = int(rng.integers(3))  # 0 round, 1 oval, 2 rectangular
    scale_w = rng.uniform(0.85, 1.0)
    scale_h = scale_w if style == 0 else rng.uniform(0.6, 0.8)
    drop = rng.uniform(0.0, 0.15)
    mask = np.zeros(shape[:2], np.uint8)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    power = 2.0 if style < 2 else 6.0  # a superellipse: power 6 is a rectangle with rounded corners
    cs, sn = np.cos(t), np.sin(t)
    ring = np.stack([np.sign(cs) * np.abs(cs) ** (2 / power), np.sign(sn) * np.abs(sn) ** (2 / power)], -1)
    lens = []
    for e, c in zip(eyes, centres):
        width = max(float(np.ptp((e - c) @ u)), 0.2 * d)
        cc = c + v * drop * width
        a, b = scale_w * width, scale_h * width
        rim = cc + ring[:, :1] * a * u + ring[:, 1:] * b * v
        cv2.polylines(mask, [np.array([_pt(q) for q in rim], np.int32)], True, 255, max(1, int(round(thickness))),
                      cv2.LINE_AA, _SS)
        lens.append((cc, a, b))
    (c_r, a_r, b_r), (c_l, a_l, b_l) = lens
    top = -0.3
    _line(mask, c_r + u * a_r + v * top * b_r, c_l - u * a_l + v * top * b_l, thickness)  # bridge
    _line(mask, c_r - u * a_r + v * top * b_r, c_r - u * (a_r + 0.35 * d) + v * top * b_r, thickness)
    _line(mask, c_l + u * a_l + v * top * b_l, c_l + u * (a_l + 0.35 * d) + v * top * b_l, thickness)
    tint = FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))] * rng.uniform(0.85, 1.15)

    def colour(xx, yy):
        return np.broadcast_to(tint, xx.shape + (3,))

    return _crop(mask, colour, shape)


GENERATORS = {"sunglasses": sunglasses, "hand": hand, "phone": phone, "microphone": microphone,
              "eyeglasses": eyeglasses}


def make_image_occluder(kind: str, shape, points: np.ndarray, rng: np.random.Generator) -> ImageOccluder:
    """An occluder of `kind` for a photo of `shape` (H, W[, 3]) whose face has landmarks `points`
    ((478 or 468, 2+) pixels, `Face.points`)."""
    if kind not in GENERATORS:
        raise ValueError(f"kind must be one of {KINDS + EXTRA_KINDS}, got {kind!r}")
    return GENERATORS[kind](tuple(shape[:2]), points, rng)


def paste(image: np.ndarray, occ: ImageOccluder) -> np.ndarray:
    """The uint8 photo with the occluder composited over it (alpha blending); a new array."""
    out = np.array(image, np.uint8, copy=True)
    h, w = occ.alpha.shape
    if h == 0 or w == 0:
        return out
    win = out[occ.y0:occ.y0 + h, occ.x0:occ.x0 + w].astype(np.float32) / 255.0
    a = occ.alpha[..., None]
    blended = win * (1.0 - a) + occ.colour * a
    out[occ.y0:occ.y0 + h, occ.x0:occ.x0 + w] = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    return out


def texel_pixels(maps, scale: float, translation) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) photo pixel coordinates (R, R) each at which the unwrap sampled each texel: the
    texel's camera-space point through the weak-perspective camera x = s X + t0, y = -s Y + t1."""
    pos = np.asarray(maps.position, np.float64)
    t = np.asarray(translation, np.float64)
    return scale * pos[..., 0] + t[0], -scale * pos[..., 1] + t[1]


def uv_coverage(alpha: np.ndarray, maps, scale: float, translation, offset=(0, 0)) -> np.ndarray:
    """(R, R) float32: the image-space coverage `alpha` (its pixel (0, 0) at photo pixel
    `offset` = (x0, y0)) sampled bilinearly at each texel's projection, 0 outside the layout
    and outside `alpha`."""
    x, y = texel_pixels(maps, scale, translation)
    a = np.ascontiguousarray(alpha, np.float32)
    if a.size == 0:
        return np.zeros(maps.mask.shape, np.float32)
    mx = (x - 0.5 - offset[0]).astype(np.float32)  # pixel centres are at integer + 0.5
    my = (y - 0.5 - offset[1]).astype(np.float32)
    cov = cv2.remap(a, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.where(maps.mask, cov, 0.0).astype(np.float32)


def occluder_uv_coverage(occ: ImageOccluder, rec) -> np.ndarray:
    """`uv_coverage` of an occluder through the fit of reconstruction `rec`."""
    return uv_coverage(occ.alpha, rec.maps, rec.fit.scale, rec.fit.translation, (occ.x0, occ.y0))
