"""Synthetic occluders and relighting for FAN v2 training (UV space, batched torch).

The training occluders come from a different generator than the evaluation's
(`facelift.evaluation.occluders`: sunglasses over the eyes, a five-part hand, hair strands
from the forehead in a fixed palette). Here shapes are random polygons, ellipses, capsules,
outlines and strands of random width and direction, anywhere on the layout, filled with a
random colour, a two-colour gradient, colour noise, a shifted cut-out of another training
sample's texture (someone else's skin, hair, eyes or background-free face parts), or another
sample's mean skin colour under a random linear shading ramp with faint noise (a hand, an arm or
another face's skin: an occluder the colour of skin, which the robust stage's confidence misses).
Optionally (`anchors`, `anchor_prob`) an occluder is centred on a facial feature instead of anywhere,
as glasses, hands, microphones and fringes are in photos: there the completion has to draw an eye, a
brow or lips, not plain cheek. Optionally (`lock_prob`) an occluder is a lock of hair: many thin
strands side by side that follow one shared random flow in any direction (the "strands" shape's
random walks each go their own way), which the confidence flags least of all occluders. Optionally
(`frames_prob`, with the eyes' positions) a sample gets glasses frames on top: a rim around each eye
(any closed curve, thin, in a random colour), sometimes with a bridge, a shadow the rims cast on the
skin (the texture darkened, offset and blurred) and a faint tint on the lenses (clear glasses, whose
rims the confidence flags only at their core).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor

SHAPES = ("polygon", "ellipse", "capsule", "outline", "strands")
FILLS = ("colour", "gradient", "noise", "cutout", "skin")


def _shape(kind: str, R: int, rng: np.random.Generator, centre: np.ndarray | None = None) -> np.ndarray:
    img = np.zeros((R, R), np.uint8)
    c = rng.uniform(0.12, 0.88, 2) * R if centre is None else np.asarray(centre, np.float64)
    size = rng.uniform(0.06, 0.3) * R
    if kind == "polygon":
        n = int(rng.integers(3, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = size * rng.uniform(0.4, 1.0, n)
        pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], -1)
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], 1)
    elif kind == "ellipse":
        axes = (max(2, int(size)), max(2, int(size * rng.uniform(0.25, 1.0))))
        cv2.ellipse(img, (int(c[0]), int(c[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == "capsule":
        d = rng.normal(size=2)
        d = d / (np.linalg.norm(d) + 1e-9) * size * rng.uniform(1.0, 2.5)
        cv2.line(img, tuple(int(v) for v in c - d), tuple(int(v) for v in c + d), 1,
                 max(2, int(size * rng.uniform(0.2, 0.7))))
    elif kind == "outline":
        for _ in range(int(rng.integers(1, 3))):
            cc = c + rng.normal(0, size, 2)
            axes = (max(3, int(size * rng.uniform(0.4, 1.0))), max(3, int(size * rng.uniform(0.3, 0.8))))
            cv2.ellipse(img, (int(cc[0]), int(cc[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1,
                        max(1, int(R * rng.uniform(0.006, 0.03))))
    else:  # strands: random walks
        width_max = max(1, int(round(R / 256 * 3)))
        for _ in range(int(rng.integers(4, 40))):
            p = rng.uniform(0, 1, 2) * R if centre is None else c + rng.normal(0, 0.08 * R, 2)
            heading = rng.uniform(0, 2 * np.pi)
            walk = [p.copy()]
            for _ in range(int(rng.integers(8, 30))):
                heading += rng.normal(0, 0.25)
                p = p + R * 0.015 * np.array([math.cos(heading), math.sin(heading)])
                walk.append(p.copy())
            cv2.polylines(img, [np.round(np.array(walk)).astype(np.int32)], False, 1,
                          int(rng.integers(1, width_max + 1)))
    return img.astype(np.float32)


def _lock(R: int, rng: np.random.Generator, centre: np.ndarray | None = None) -> np.ndarray:
    """A lock of hair: 6-35 strands, 1-3 texels wide at 256, started side by side across the lock
    and bent together by one random flow (each strand with a little of its own), of unequal lengths."""
    img = np.zeros((R, R), np.uint8)
    c = rng.uniform(0.12, 0.88, 2) * R if centre is None else np.asarray(centre, np.float64)
    step = R * 0.012
    n_steps = int(rng.integers(16, 49))
    heading = rng.uniform(0, 2 * np.pi)
    bends = rng.normal(0, 0.12, n_steps)
    across = np.array([-math.sin(heading), math.cos(heading)])
    along = np.array([math.cos(heading), math.sin(heading)])
    half_width = rng.uniform(0.04, 0.15) * R
    width_max = max(1, int(round(R / 256 * 3)))
    for _ in range(int(rng.integers(6, 36))):
        p = c + across * rng.uniform(-half_width, half_width) + along * rng.normal(0, 2 * step)
        h = heading + rng.normal(0, 0.08)
        walk = [p.copy()]
        for t in range(int(rng.integers(n_steps // 2, n_steps + 1))):
            h += bends[t] + rng.normal(0, 0.04)
            p = p + step * np.array([math.cos(h), math.sin(h)])
            walk.append(p.copy())
        cv2.polylines(img, [np.round(np.array(walk)).astype(np.int32)], False, 1, int(rng.integers(1, width_max + 1)))
    return img.astype(np.float32)


def _frames(R: int, rng: np.random.Generator, eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Glasses frames around `eyes` ((2, 2) texel positions x, y): (rims (R, R), lenses (R, R), the
    rims' shadow (R, R)), each in [0, 1]. A rim is a closed superellipse (power 1.5-8) around each eye,
    of random size, aspect, tilt and centre offset, 1-5 texels wide at 256, with a bridge half the time."""
    rims = np.zeros((R, R), np.uint8)
    lenses = np.zeros((R, R), np.uint8)
    eyes = np.asarray(eyes, np.float64)
    gap = max(float(np.linalg.norm(eyes[1] - eyes[0])), 1.0)
    power = rng.uniform(1.5, 8.0)
    a, b = gap * rng.uniform(0.3, 0.5), gap * rng.uniform(0.2, 0.4)
    tilt = rng.normal(0, 0.1)
    offset = rng.normal(0, 0.05 * gap, 2)
    width = int(rng.integers(1, max(2, int(round(R / 256 * 5))) + 1))
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    cs, sn = np.cos(t), np.sin(t)
    unit = np.stack([np.sign(cs) * np.abs(cs) ** (2 / power) * a, np.sign(sn) * np.abs(sn) ** (2 / power) * b], -1)
    rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
    inner = []
    for k, eye in enumerate(eyes):
        mirror = np.array([1.0 if k == 0 else -1.0, 1.0])  # the two rims mirror each other
        pts = np.round(eye + offset * mirror + (unit * mirror) @ rot.T).astype(np.int32)
        cv2.fillPoly(lenses, [pts], 1)
        cv2.polylines(rims, [pts], True, 1, width)
        inner.append(pts[np.argmin(np.abs(pts[:, 0] - eyes.mean(0)[0]))])
    if rng.random() < 0.5:
        cv2.line(rims, tuple(int(v) for v in inner[0]), tuple(int(v) for v in inner[1]), 1, width)
    rims_f = rims.astype(np.float32)
    if rng.random() < 0.5:
        rims_f = cv2.GaussianBlur(rims_f, (0, 0), rng.uniform(0.4, 1.0))
    shadow = np.zeros((R, R), np.float32)
    if rng.random() < 0.5:
        shift = np.array([[1, 0, rng.normal(0, 1.5)], [0, 1, rng.uniform(1, 5)]], np.float32)  # down the face
        shadow = cv2.GaussianBlur(cv2.warpAffine(rims.astype(np.float32), shift, (R, R)), (0, 0), rng.uniform(1, 3))
        shadow = np.clip(shadow / max(float(shadow.max()), 1e-6), 0, 1) * (1 - rims_f)
    return rims_f, lenses.astype(np.float32) * (1 - rims_f), shadow


def _colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(0, 255)]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _fill(kind: str, R: int, rng: np.random.Generator, other=None):
    """(fill (R, R, 3), where it holds colour (R, R) or None for everywhere)."""
    if kind == "cutout" and other is not None:
        shift = tuple(int(v) for v in rng.integers(-R // 3, R // 3 + 1, 2))
        tex, vis = other
        return np.roll(tex, shift, axis=(0, 1)), np.roll(vis, shift, axis=(0, 1))
    if kind == "skin" and other is not None:
        tex, vis = other
        if vis.sum() >= 16:
            base = np.median(tex[vis], axis=0).astype(np.float32) * rng.uniform(0.8, 1.15)
            ang = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[0:R, 0:R].astype(np.float32) / R
            ramp = 1 + rng.uniform(0.1, 0.5) * ((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang))
            noise = cv2.GaussianBlur(rng.normal(0, 1, (R, R)).astype(np.float32), (0, 0), rng.uniform(1, 4))[..., None]
            return np.clip(base * ramp[..., None] * (1 + 0.03 * noise), 0, 1), None
    if kind == "gradient":
        a, b = _colour(rng), _colour(rng)
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:R, 0:R].astype(np.float32) / R
        t = np.clip((xx * math.cos(ang) + yy * math.sin(ang)) * rng.uniform(0.5, 2) % 1.0, 0, 1)[..., None]
        return a * (1 - t) + b * t, None
    base = np.broadcast_to(_colour(rng), (R, R, 3)).astype(np.float32)
    if kind == "noise":
        noise = cv2.GaussianBlur(rng.normal(0, 1, (R, R, 3)).astype(np.float32), (0, 0), rng.uniform(0.5, 3))
        return np.clip(base + noise * rng.uniform(0.05, 0.25), 0, 1), None
    return base.copy(), None


def random_occluders(texture: Tensor, visibility: Tensor, rng: np.random.Generator, probability: float = 0.8,
                     max_count: int = 3, anchors: np.ndarray | None = None,
                     anchor_prob: float = 0.0, lock_prob: float = 0.0,
                     extra_lock_prob: float = 0.0, frames_prob: float = 0.0,
                     eyes: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """Occluders for a batch: (alpha (B, 1, R, R) in [0, 1], colour (B, 3, R, R)).

    Each sample gets none with probability 1 - `probability`, else 1..`max_count` occluders.
    Cut-outs take another sample's visible texture (the next in the batch). With `anchors`, (N, 2)
    texel positions (x, y) at this resolution, each occluder is centred within a few texels of a
    random one with probability `anchor_prob` (0 draws exactly as without anchors). With probability
    `lock_prob` an occluder is a lock of hair instead of one of SHAPES, and with probability
    `extra_lock_prob` an occluded sample gets a lock on top of its other occluders, and with probability
    `frames_prob` glasses frames around `eyes` ((2, 2) texel positions) on top of everything (0 draws
    exactly as before). The frames' shadow is the texture darkened (its coverage the shadow's depth), a
    lens tint covers up to 0.25."""
    B, _, R, _ = texture.shape
    for name, p in (("anchor_prob", anchor_prob), ("lock_prob", lock_prob), ("extra_lock_prob", extra_lock_prob),
                    ("frames_prob", frames_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {p!r}")
    if frames_prob > 0 and (eyes is None or np.asarray(eyes).shape != (2, 2)):
        raise ValueError("frames_prob > 0 needs eyes: a (2, 2) array of the eyes' texel positions")
    eye_points = np.zeros((2, 2)) if eyes is None else np.asarray(eyes, np.float64)
    points = np.zeros((0, 2)) if anchors is None else np.asarray(anchors, np.float64)
    if anchor_prob > 0 and (points.ndim != 2 or points.shape[1] != 2 or len(points) == 0):
        raise ValueError("anchor_prob > 0 needs anchors: an (N, 2) array of texel positions, N >= 1")
    tex = texture.detach().permute(0, 2, 3, 1).cpu().numpy()
    vis = visibility.detach()[:, 0].cpu().numpy() > 0.5
    alpha = np.zeros((B, R, R), np.float32)
    colour = np.zeros((B, R, R, 3), np.float32)
    for b in range(B):
        if rng.random() >= probability:
            continue
        locks = [False] * int(rng.integers(1, max_count + 1))
        if extra_lock_prob > 0 and rng.random() < extra_lock_prob:
            locks.append(True)
        for lock in locks:
            kind_shape = SHAPES[rng.integers(len(SHAPES))]
            centre = None
            if anchor_prob > 0 and rng.random() < anchor_prob:
                centre = points[rng.integers(len(points))] + rng.normal(0, 0.02 * R, 2)
            if lock or (lock_prob > 0 and rng.random() < lock_prob):
                shape = _lock(R, rng, centre)
            else:
                shape = _shape(kind_shape, R, rng, centre)
            if rng.random() < 0.5:
                shape = cv2.GaussianBlur(shape, (0, 0), rng.uniform(0.4, 1.2))
            kind = FILLS[rng.integers(len(FILLS))]
            # skin: the sample's own (a hand) or the next one's; cut-outs: always another sample's
            other = b if (kind == "skin" and rng.random() < 0.5) or B == 1 else (b + 1) % B
            fill, valid = _fill(kind, R, rng, (tex[other], vis[other]) if kind == "skin" or B > 1 else None)
            if valid is not None:  # a cut-out exists only where the other photo was seen
                shape = shape * valid
            alpha[b] = np.maximum(alpha[b], shape)
            colour[b] = colour[b] * (1 - shape[..., None]) + fill * shape[..., None]
        if frames_prob > 0 and rng.random() < frames_prob:
            rims, lenses, shadow = _frames(R, rng, eye_points)
            dark = rng.uniform(0.3, 0.7)
            free = alpha[b] <= 0  # the rims' shadow and tint fall on the face, not on other occluders
            shadow = shadow * free
            colour[b] = np.where(shadow[..., None] > 0, tex[b] * dark, colour[b])
            alpha[b] = np.maximum(alpha[b], shadow * rng.uniform(0.5, 1.0))
            tint = lenses * rng.uniform(0.0, 0.25) * (free & (shadow <= 0))
            tint_colour = _colour(rng)
            colour[b] = np.where(tint[..., None] > 0, tint_colour, colour[b])
            alpha[b] = np.maximum(alpha[b], tint)
            rim_colour = _colour(rng) * (rng.uniform(0.1, 0.5) if rng.random() < 0.5 else 1.0)  # often dark
            alpha[b] = np.maximum(alpha[b], rims)
            colour[b] = colour[b] * (1 - rims[..., None]) + rim_colour * rims[..., None]
    alpha *= vis
    to = lambda a: torch.from_numpy(a).to(texture.device)  # noqa: E731
    return to(alpha)[:, None], to(colour).permute(0, 3, 1, 2).contiguous()


def feature_anchors(face_model, R: int) -> np.ndarray:
    """(51, 2) texel positions (x, y) at resolution R of the iBUG inner points (brows, nose, eyes,
    mouth) on `face_model`'s UV layout."""
    from ..face_model.ibug68 import IBUG68_FROM_MEDIAPIPE, INNER
    from ..geometry.rasterize import uv_to_texel

    return uv_to_texel(np.asarray(face_model.uv)[IBUG68_FROM_MEDIAPIPE[INNER]], R)


def eye_centres(face_model, R: int) -> np.ndarray:
    """(2, 2) texel positions (x, y) at resolution R of the two eyes' centres (the mean of each eye's
    six iBUG points) on `face_model`'s UV layout."""
    from ..face_model.ibug68 import IBUG68_FROM_MEDIAPIPE
    from ..geometry.rasterize import uv_to_texel

    px = uv_to_texel(np.asarray(face_model.uv)[IBUG68_FROM_MEDIAPIPE], R)
    return np.stack([px[36:42].mean(0), px[42:48].mean(0)])


def random_sh(batch: int, rng: np.random.Generator, device=None) -> Tensor:
    """Plausible random lighting (B, 3, 9): a directional light from the front hemisphere
    (azimuth +-80, elevation -40..60 degrees), a slightly coloured light and an ambient term."""
    from ..geometry.sh import directional_light_sh, light_direction

    out = []
    for _ in range(batch):
        d = light_direction(rng.uniform(-80, 80), rng.uniform(-40, 60))
        colour = 1.0 + rng.uniform(-0.2, 0.2, 3)
        out.append(directional_light_sh(d, colour, intensity=rng.uniform(0.6, 1.2), ambient=rng.uniform(0.15, 0.7)))
    return torch.as_tensor(np.stack(out), dtype=torch.float32, device=device)
