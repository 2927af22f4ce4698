"""A grid of 12 validation faces through the shipped bundle: input photo, texture I_t(UV),
PCA albedo (as the bundle computes it: B-Net, or least squares without one), FAN albedo,
DRN displacement (*: contrast-stretched per face to +-its 99th percentile, which is printed)
and a relit render.

    python training/make_val_grid.py --bundle checkpoints --out docs/training/val_grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facelift.geometry.sh import directional_light_sh, irradiance
from facelift.training.data import list_images

REPO = Path(__file__).resolve().parents[1]

COLUMNS = ("input", "texture I_t(UV)", "PCA albedo", "FAN albedo", "DRN displacement*", "relit")


def _u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def relit_uv(rec, light=(40.0, 20.0)) -> np.ndarray:
    """Fallback relighting in UV space (albedo x SH shading of a directional light)."""
    from facelift.geometry.sh import light_direction

    sh = directional_light_sh(light_direction(*light), intensity=0.8, ambient=0.35)
    return rec.albedo * irradiance(rec.normal_map, sh) * rec.maps.mask[..., None]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(REPO / "checkpoints"))
    ap.add_argument("--bnet", default=None,
                    help="a trained B-Net for the PCA column (default: what the bundle does, B-Net or least squares)")
    ap.add_argument("--images", default=str(REPO.parent / "shared/data/faces/utkface/val"))
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--out", default=str(REPO / "docs/training/val_grid.png"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    from facelift.models import BNet
    from facelift.pipeline import FaceLift

    pipe = FaceLift.from_pretrained(args.bundle)
    if pipe.bnet is None and args.bnet and Path(args.bnet).is_dir():
        pipe.bnet = BNet.from_pretrained(args.bnet).float().eval()
    paths = list_images(args.images)
    picks = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, 4 * args.n)]
    S = args.size
    rows = []
    for p in picks:
        if len(rows) == args.n:
            break
        try:
            rec = pipe.reconstruct(str(p))
        except Exception as exc:  # noqa: BLE001 - skip faces the pipeline rejects
            print(f"skip {p.name}: {exc}")
            continue
        disp = rec.displacement  # metres; stretched per face to +-its 99th percentile (*)
        lim = max(float(np.percentile(np.abs(disp[rec.maps.mask]), 99)), 1e-9)
        disp_img = np.repeat(np.clip(0.5 + 0.5 * disp / lim, 0, 1)[..., None], 3, -1) * rec.maps.mask[..., None]
        try:
            relit = rec.render(light=(40.0, 20.0), size=S, mode="shaded_details")
        except Exception as exc:  # noqa: BLE001 - no OpenGL: relight in UV space
            print(f"render failed ({exc}); relighting in UV space")
            relit = _u8(relit_uv(rec))
        tiles = [rec.image, _u8(rec.texture), _u8(rec.albedo_pca), _u8(rec.albedo), _u8(disp_img), relit]
        rows.append(np.concatenate([_fit(np.asarray(t), S) for t in tiles], 1))
        picks_used = p.name
        print(f"{picks_used}: albedo_pca_source={rec.albedo_pca_source}, displacement p99 {lim * 1e3:.3f} mm")
    header = Image.new("RGB", (S * len(COLUMNS), 16), "white")
    d = ImageDraw.Draw(header)
    for i, name in enumerate(COLUMNS):
        d.text((i * S + 4, 2), name, fill="black")
    grid = np.concatenate([np.asarray(header)] + rows, 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(rows)} faces)")
    pipe.close()


if __name__ == "__main__":
    main()
