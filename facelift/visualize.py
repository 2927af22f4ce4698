"""Pictures of a reconstruction for people: annotated photo, map previews, colour maps with a
legend, turntable GIFs and an OBJ zip. Pure numpy + PIL; every image is HxWx3 uint8.

The demo app (`app.py`) shows these side by side; they are equally usable from a notebook::

    from facelift import FaceLift, visualize as vis
    rec = FaceLift.from_pretrained().reconstruct("photo.jpg")
    vis.draw_faces(rec.image, rec.faces, rec.face_index)       # landmarks + boxes
    vis.displacement_image(rec.displacement, rec.maps.mask)    # colour-mapped, with a legend
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .export import to_uint8

BACKGROUND = (236, 238, 242)          # behind UV maps, outside the face's layout
SELECTED = (46, 204, 113)             # the reconstructed face: box and landmarks
OTHER = (255, 159, 26)                # the other detected faces
NOT_SEEN = (214, 48, 92)              # hatching over texels the photo does not see

# A diverging blue - white - red map (close to matplotlib's "RdBu_r"): negative values blue,
# zero white, positive red. Control points at 0, 0.25, 0.5, 0.75, 1.
DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]],
                     np.float32) / 255.0
# A perceptually ordered sequential map (samples of viridis).
SEQUENTIAL = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                      np.float32) / 255.0
COLORMAPS = {"diverging": DIVERGING, "sequential": SEQUENTIAL}


# ---- small helpers --------------------------------------------------------------------------

def font(size: int = 14) -> ImageFont.ImageFont:
    """PIL's built-in scalable font at `size` pixels (the bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _rgb(image) -> np.ndarray:
    a = to_uint8(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def _check_mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    m = np.asarray(mask).astype(bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask must be {tuple(shape)}, got {m.shape}")
    return m


def on_background(image, mask=None, background=BACKGROUND) -> np.ndarray:
    """`image` (a UV map, float or uint8) with the texels outside `mask` set to `background`."""
    rgb = _rgb(image).copy()
    m = _check_mask(mask, rgb.shape[:2])
    rgb[~m] = np.asarray(background, np.uint8)
    return rgb


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is `size` pixels (bilinear; returns the input when equal)."""
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    if max(h, w) == size:
        return rgb
    f = size / max(h, w)
    new = (max(1, round(w * f)), max(1, round(h * f)))
    resample = Image.Resampling.LANCZOS if f < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize(new, resample))


# ---- the photo ------------------------------------------------------------------------------

def draw_faces(image, faces: Sequence, selected: int | None = 0, max_side: int | None = 768,
               landmarks: bool = True) -> np.ndarray:
    """The photo with each detected face's box (numbered from 1, in `faces` order) and the
    landmarks of face `selected` (green; the others' boxes in orange). `faces` are objects
    with `points` (N, 2+) and `box` (x0, y0, x1, y1) in pixels of `image`. The result is
    downscaled so its longer side is at most `max_side` (None: keep the size)."""
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    scale = 1.0
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        rgb = upscale(rgb, max_side)
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    side = max(canvas.size)
    line = max(2, round(side / 300))
    label_font = font(max(12, round(side / 32)))
    order = list(range(len(faces)))
    if selected is not None and 0 <= selected < len(faces):
        order.remove(selected)
        order.append(selected)  # drawn last: on top
    for i in order:
        face = faces[i]
        colour = SELECTED if i == selected else OTHER
        x0, y0, x1, y1 = (float(v) * scale for v in face.box)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=line)
        if landmarks and i == selected:
            pts = np.asarray(face.points, np.float32)[:, :2] * scale
            r = max(0.8, side / 900)
            for x, y in pts:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        text = str(i + 1)
        tx, ty = x0 + line, y0 + line
        box = draw.textbbox((tx, ty), text, font=label_font)
        pad = line
        draw.rectangle([box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad], fill=colour)
        draw.text((tx, ty), text, fill=(0, 0, 0), font=label_font)
    return np.asarray(canvas)


# ---- UV maps --------------------------------------------------------------------------------

def texture_with_visibility(texture, visibility, mask=None, threshold: float = 0.5,
                            stripe: int = 6) -> np.ndarray:
    """The unwrapped texture, with texels the photo does not see (visibility < threshold,
    inside `mask`) hatched in NOT_SEEN, and texels outside the layout on BACKGROUND."""
    tex = to_uint8(texture)
    if tex.ndim != 3 or tex.shape[2] != 3:
        raise ValueError(f"texture must be (R, R, 3), got {tex.shape}")
    vis = np.asarray(visibility, np.float32)
    if vis.ndim == 3 and vis.shape[2] == 1:
        vis = vis[..., 0]
    if vis.shape != tex.shape[:2]:
        raise ValueError(f"visibility must be {tex.shape[:2]}, got {vis.shape}")
    m = _check_mask(mask, tex.shape[:2])
    out = tex.astype(np.float32)
    hidden = m & (vis < threshold)
    rows, cols = np.indices(tex.shape[:2])
    stripes = ((rows + cols) // max(1, stripe)) % 2 == 0
    tint = np.where(stripes[..., None], np.asarray(NOT_SEEN, np.float32), np.float32(200.0))
    out[hidden] = (0.25 * out + 0.75 * tint)[hidden]
    out[~m] = BACKGROUND
    return (out + 0.5).astype(np.uint8)


def confidence_image(confidence, mask=None) -> np.ndarray:
    """A [0, 1] map (the skin confidence) as a sequential colour map, BACKGROUND outside `mask`."""
    c = np.asarray(confidence, np.float32)
    if c.ndim != 2:
        raise ValueError(f"confidence must be (R, R), got {c.shape}")
    m = _check_mask(mask, c.shape)
    out = colormap(c, 0.0, 1.0, "sequential")
    out[~m] = BACKGROUND
    return out


def normal_map_image(normal, mask=None) -> np.ndarray:
    """Unit normals (R, R, 3) -> (n + 1) / 2 as RGB, BACKGROUND outside `mask` (default:
    where the normal is zero)."""
    n = np.asarray(normal, np.float32)
    if n.ndim != 3 or n.shape[2] != 3:
        raise ValueError(f"normal map must be (R, R, 3), got {n.shape}")
    if mask is None:
        mask = np.abs(n).sum(-1) > 0
    return on_background((n + 1.0) / 2.0, mask)


def colormap(values, vmin: float, vmax: float, cmap: str | np.ndarray = "diverging") -> np.ndarray:
    """Map `values` linearly from [vmin, vmax] (clipped) through `cmap` ("diverging",
    "sequential" or an (K, 3) array of colours in [0, 1]) -> (..., 3) uint8."""
    lut = COLORMAPS[cmap] if isinstance(cmap, str) else np.asarray(cmap, np.float32)
    if lut.ndim != 2 or lut.shape[1] != 3 or len(lut) < 2:
        raise ValueError(f"cmap must be a name in {sorted(COLORMAPS)} or (K >= 2, 3) colours")
    v = np.nan_to_num(np.asarray(values, np.float32))
    span = float(vmax) - float(vmin)
    t = np.clip((v - vmin) / span, 0.0, 1.0) if span > 0 else np.full(v.shape, 0.5, np.float32)
    x = t * (len(lut) - 1)
    i = np.minimum(x.astype(np.int64), len(lut) - 2)
    f = (x - i)[..., None]
    rgb = lut[i] * (1 - f) + lut[i + 1] * f
    return (rgb * 255 + 0.5).astype(np.uint8)


def _nice_limit(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at least `value` (> 0)."""
    exponent = np.floor(np.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        limit = step * 10.0 ** exponent
        if limit >= value * (1 - 1e-9):
            return float(limit)
    return float(10.0 ** (exponent + 1))


def _format_tick(value: float, limit: float) -> str:
    if value == 0:
        return "0"
    decimals = max(0, int(-np.floor(np.log10(limit))) + 1)
    return f"{value:+.{decimals}f}"


def colorbar(vmin: float, vmax: float, height: int, cmap="diverging", title: str = "",
             ticks: int = 5, width: int | None = None, background=(255, 255, 255)) -> np.ndarray:
    """A vertical colour bar (vmax on top) with `ticks` labelled values and a title:
    (height, width, 3) uint8; `width=None` fits the labels."""
    size = max(12, height // 22)
    f = font(size)
    limit = max(abs(vmin), abs(vmax)) or 1.0
    values = [vmax + (vmin - vmax) * (k / (ticks - 1) if ticks > 1 else 0.5) for k in range(ticks)]
    labels = [_format_tick(v, limit) for v in values]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    bar_w, x0 = max(12, size), 6
    text_w = max(measure.textlength(t, font=f) for t in [*labels, ""])
    if width is None:
        width = int(max(x0 + bar_w + 8 + text_w, 8 + measure.textlength(title, font=f)) + 8)
    canvas = Image.new("RGB", (width, height), tuple(background))
    draw = ImageDraw.Draw(canvas)
    title_h = draw.textbbox((0, 0), title, font=f)[3] + 4 if title else 0
    top, bottom = title_h + size // 2 + 4, height - size // 2 - 6
    length = max(2, bottom - top)
    ramp = np.linspace(vmax, vmin, length, dtype=np.float32)
    bar = np.repeat(colormap(ramp, vmin, vmax, cmap)[:, None], bar_w, axis=1)
    canvas.paste(Image.fromarray(bar), (x0, top))
    draw.rectangle([x0 - 1, top - 1, x0 + bar_w, top + length], outline=(80, 80, 80))
    if title:
        draw.text((4, 4), title, fill=(30, 30, 30), font=f)
    for k, label in enumerate(labels):
        t = k / (ticks - 1) if ticks > 1 else 0.5
        y = top + t * (length - 1)
        draw.line([x0 + bar_w, y, x0 + bar_w + 5, y], fill=(60, 60, 60), width=1)
        bbox = draw.textbbox((0, 0), label, font=f)
        draw.text((x0 + bar_w + 8, y - (bbox[1] + bbox[3]) / 2), label, fill=(30, 30, 30), font=f)
    return np.asarray(canvas)


def displacement_image(displacement, mask=None, limit: float | None = None, size: int = 512,
                       unit: str = "mm", legend: bool = True) -> np.ndarray:
    """The displacement map (R, R) in metres, colour-mapped blue (in) - white - red (out)
    over +-`limit` (default: a round number above the 99th percentile of |d| in `mask`),
    upscaled to `size` and, with `legend`, a colour bar in `unit` ("mm" or "um") on its right."""
    d = np.asarray(displacement, np.float32)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"displacement must be (R, R), got {d.shape}")
    m = _check_mask(mask, d.shape)
    factor = {"mm": 1e3, "um": 1e6, "m": 1.0}.get(unit)
    if factor is None:
        raise ValueError(f"unit must be 'mm', 'um' or 'm', got {unit!r}")
    values = np.nan_to_num(d) * factor
    if limit is None:
        inside = np.abs(values[m])
        top = float(np.percentile(inside, 99)) if inside.size else 0.0
        limit_u = _nice_limit(top) if top > 0 else 1.0
    else:
        if not limit > 0:
            raise ValueError(f"limit must be positive, got {limit}")
        limit_u = float(limit) * factor
    rgb = on_background(colormap(values, -limit_u, limit_u, DIVERGING), m)
    rgb = upscale(rgb, size)
    if not legend:
        return rgb
    bar = colorbar(-limit_u, limit_u, rgb.shape[0], DIVERGING, title=unit, background=BACKGROUND)
    return np.concatenate([rgb, bar], axis=1)


# ---- animation and archives ------------------------------------------------------------------

def turntable_yaws(frames: int = 24, amplitude: float = 40.0) -> list[float]:
    """Yaw angles (degrees) of a back-and-forth sweep over +-`amplitude` that loops smoothly."""
    if frames < 1:
        raise ValueError("frames must be at least 1")
    return [float(amplitude * np.sin(2 * np.pi * k / frames)) for k in range(frames)]


def turntable_frames(render: Callable[..., np.ndarray], frames: int = 24, amplitude: float = 40.0,
                     **render_kwargs) -> list[np.ndarray]:
    """`render(yaw=..., **render_kwargs)` for each of `turntable_yaws(frames, amplitude)`;
    e.g. `turntable_frames(rec.render, light=(30, 20), size=320)`."""
    return [render(yaw=yaw, **render_kwargs) for yaw in turntable_yaws(frames, amplitude)]


def save_gif(path, frames: Iterable, fps: float = 12.0) -> Path:
    """Write `frames` (HxWx3 uint8 or float, all the same size) as a looping GIF with one
    shared 255-colour palette (no flicker between frames). Returns the path."""
    images = [Image.fromarray(_rgb(f)) for f in frames]
    if not images:
        raise ValueError("a GIF needs at least one frame")
    if any(im.size != images[0].size for im in images):
        raise ValueError("all frames must have the same size")
    # one palette from a strip of (a few of) the frames, so colours are consistent
    sample = images[:: max(1, len(images) // 6)]
    strip = Image.new("RGB", (images[0].width * len(sample), images[0].height))
    for k, im in enumerate(sample):
        strip.paste(im, (k * images[0].width, 0))
    palette = strip.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    indexed = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    indexed[0].save(tmp, format="GIF", save_all=True, append_images=indexed[1:],
                    duration=max(20, round(1000 / fps)), loop=0, disposal=1)
    os.replace(tmp, path)
    return path


def _mtl_files(obj_path: Path) -> list[Path]:
    """The MTL files an OBJ names, and the texture files those name (existing ones only)."""
    folder = obj_path.parent
    files: list[Path] = []
    for line in obj_path.read_text(errors="replace").splitlines():
        if line.startswith("mtllib "):
            mtl = folder / line.split(None, 1)[1].strip()
            if mtl.is_file() and mtl not in files:
                files.append(mtl)
    textures: list[Path] = []
    for mtl in files:
        for line in mtl.read_text(errors="replace").splitlines():
            match = re.match(r"\s*(map_\w+|bump|disp|norm)\s+(?:-\S+\s+\S+\s+)*(\S+)\s*$", line)
            if match:
                texture = folder / match.group(2)
                if texture.is_file() and texture not in textures:
                    textures.append(texture)
    return files + textures


def obj_zip(obj_path, zip_path) -> Path:
    """Zip an OBJ with the MTL files it names and their textures (flat, by file name)."""
    obj_path, zip_path = Path(obj_path), Path(zip_path)
    if not obj_path.is_file():
        raise FileNotFoundError(obj_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in [obj_path, *_mtl_files(obj_path)]:
            zf.write(path, arcname=path.name)
    os.replace(tmp, zip_path)
    return zip_path
