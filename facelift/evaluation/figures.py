"""Comparison figure: input | texture | PCA albedo | FAN albedo | displacement | relit render.

    python -m facelift.evaluation.figures PHOTO_OR_DIR... -o docs/comparison.png [--weights BUNDLE]
    python -m facelift.evaluation.figures --details PHOTO_OR_DIR... -o docs/details.png
    python -m facelift.evaluation.figures --showcase examples/astronaut.png -o docs/showcase.png

`--showcase` (README's figure): photo | the reconstruction drawn over it in the photo's pose |
FAN albedo | relit from the left | turned and relit from the right.

`--details`: photo | shaded without details | shaded with details | displacement, the shading
of the shape alone (a uniform grey albedo) under one directional light, the displacement in mm
on a diverging colour map (blue: below the smooth surface, red: above).

One row per photo (the largest face), every panel `--size` pixels square. The displacement is
shown as grey (mid-grey = 0, white = +max_rate, black = -max_rate of the DRN); the relit render
uses a directional light from the upper right with the FAN albedo and the DRN details.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLUMNS = ("input", "texture", "PCA albedo", "FAN albedo", "displacement", "relit render")
DETAIL_COLUMNS = ("photo", "shaded, no details", "shaded, with details", "displacement, blue -1 to red +1 mm")
SHOWCASE_COLUMNS = ("photo", "in the photo", "FAN albedo", "relit", "turned, relit")
DETAIL_LIGHT = (55, 20)  # azimuth, elevation (degrees): a raking light that shows relief
DETAIL_LIMIT_M = 0.001  # the displacement colour map spans +-1 mm


def _u8(x) -> np.ndarray:
    return (np.clip(np.asarray(x, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def _square_crop(image: np.ndarray, box, margin: float = 0.35) -> np.ndarray:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    pil = Image.fromarray(image)
    return np.asarray(pil.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))))


def panels(rec, size: int = 192) -> list[np.ndarray]:
    """The six panels of one reconstruction, each (size, size, 3) uint8."""
    scale = rec.displacement_scale if rec.displacement_scale > 0 else 1.0
    disp = np.where(rec.maps.mask, rec.displacement / scale * 0.5 + 0.5, 0.0)
    images = [
        _square_crop(rec.image, rec.face.box),
        _u8(rec.texture), _u8(rec.albedo_pca), _u8(rec.albedo),
        _u8(np.repeat(disp[..., None], 3, -1)),
        rec.render(light=(40, 25), size=size, mode="shaded_details", ambient=0.3),
    ]
    return [np.asarray(Image.fromarray(im).convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]


def detail_panels(rec, size: int = 256) -> list[np.ndarray]:
    """The four panels of the details figure for one reconstruction, each (size, size, 3) uint8."""
    from ..visualize import displacement_image

    shaded = [rec.render(light=DETAIL_LIGHT, size=size, mode="shaded", details=d, albedo="grey", ambient=0.25)
              for d in (False, True)]
    disp = displacement_image(rec.displacement, rec.maps.mask, limit=DETAIL_LIMIT_M, size=size, legend=False)
    images = [_square_crop(rec.image, rec.face.box), *shaded, disp]
    return [np.asarray(Image.fromarray(im).convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]


def showcase_panels(rec, size: int = 256) -> list[np.ndarray]:
    """The five panels of the README's figure for one reconstruction, each (size, size, 3) uint8."""
    box = rec.face.box
    images = [
        _square_crop(rec.image, box), _square_crop(rec.render_in_photo(), box), _u8(rec.albedo),
        rec.render(light=(-50, 15), size=size, ambient=0.3),
        rec.render(yaw=35, light=(60, 25), size=size, ambient=0.3),
    ]
    return [np.asarray(Image.fromarray(im).convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]


FIGURES = {"comparison": (COLUMNS, panels), "details": (DETAIL_COLUMNS, detail_panels),
           "showcase": (SHOWCASE_COLUMNS, showcase_panels)}


def comparison_figure(pipeline, photos, size: int = 192, label_height: int = 22,
                      details: bool = False, kind: str | None = None) -> tuple[Image.Image, list]:
    """The figure for `photos` (paths); returns (image, [(photo, error)] for photos that failed).
    `kind`: a key of FIGURES ("comparison" by default; `details=True` is "details")."""
    columns, make = FIGURES[kind or ("details" if details else "comparison")]
    rows, failed = [], []
    for p in photos:
        try:
            rows.append((Path(p).name, make(pipeline.reconstruct(p), size)))
        except Exception as exc:  # noqa: BLE001 - a figure skips a bad photo, says so
            failed.append((str(p), f"{type(exc).__name__}: {exc}"))
    W, H = size * len(columns), label_height + size * len(rows)
    fig = Image.new("RGB", (W, max(H, label_height)), "white")
    draw = ImageDraw.Draw(fig)
    for c, name in enumerate(columns):
        draw.text((c * size + 6, 5), name, fill=(0, 0, 0))
    for r, (_, ims) in enumerate(rows):
        for c, im in enumerate(ims):
            fig.paste(Image.fromarray(im), (c * size, label_height + r * size))
    return fig, failed


def main(argv=None) -> int:
    from ..evaluation.runner import collect_images
    from ..pipeline import FaceLift

    ap = argparse.ArgumentParser(prog="python -m facelift.evaluation.figures", description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+", help="photos or folders")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--size", type=int, default=192, help="panel size in pixels (default 192)")
    ap.add_argument("--details", action="store_true", help="the DRN details figure (DETAIL_COLUMNS)")
    ap.add_argument("--showcase", action="store_true", help="the README's figure (SHOWCASE_COLUMNS)")
    args = ap.parse_args(argv)
    photos = [p for item in args.photos for p in collect_images(item)]
    fl = FaceLift.from_pretrained(args.weights)
    try:
        kind = "showcase" if args.showcase else "details" if args.details else "comparison"
        fig, failed = comparison_figure(fl, photos, args.size, kind=kind)
    finally:
        fl.close()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.save(args.output, optimize=True)
    for p, err in failed:
        print(f"skipped {p}: {err}", file=sys.stderr)
    print(f"wrote {args.output} ({len(photos) - len(failed)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
