"""Where a gated FAN's occlusion ratio comes from (issue 15), on the evaluation's occluders
(`facelift.evaluation.occluders`, the same draws as `facelift evaluate --seed`), per kind:

- ``fan``, ``pca``: the change ratio of `facelift evaluate`; ``fan_lowpass``, ``pca_lowpass``: the same
  above the skin's detail (`facelift.evaluation.metrics.lowpass_change_ratio`, sigma 4 texels), where a
  sharp albedo is no longer charged for the detail the occluder hides; ``completion``: the completion branch's
  alone; ``gate_in`` / ``gate_clean`` and ``confidence_in`` / ``confidence_clean``: the gate and the
  skin confidence under the occluder, in the occluded and in the clean run; ``stiff_input``,
  ``delit_input``: how far those FAN inputs move (change ratio);
- oracle swaps, the FAN on the occluded run's inputs with one taken from the clean run:
  ``oracle_stiff``, ``oracle_light`` (the de-lit texture under the clean run's light), both, and
  ``oracle_confidence_0`` (confidence 0 under the occluder: the gate shut there); ``oracle_all``,
  all of them: what the network's completion scores when it is told exactly where the occluder is
  and nothing else moves;
- floors, the ratio if the albedo under the occluder were the clean run's: ``floor_stiff`` (stiff
  PCA albedo), ``floor_pca`` (full PCA albedo), ``floor_blur`` (its FAN albedo blurred, sigma 4
  texels): a completion cannot know the detail the occluder hides, and these say what that costs.

    python training/diagnose_occlusion.py ../shared/data/faces/utkface/val --limit 40 \\
        --json docs/evaluation/ablations/occlusion_diagnosis_fan_v2_6.val40.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

KEYS = ("fan", "pca", "fan_lowpass", "pca_lowpass", "completion", "gate_in", "gate_clean", "confidence_in",
        "confidence_clean", "stiff_input", "delit_input", "oracle_stiff", "oracle_light", "oracle_stiff_light", "oracle_confidence_0", "oracle_all",
        "floor_stiff", "floor_pca", "floor_blur")


def run_fan(fan, sources: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(albedo, gate, completion) as (R, R, C) maps; the FAN at the maps' resolution."""
    import torch

    x = torch.cat([torch.from_numpy(np.ascontiguousarray(sources[n].transpose(2, 0, 1)))[None] for n in fan.inputs], 1)
    with torch.inference_mode():
        y, gate = fan(x, return_gate=True)
        comp = fan.completion(x)
    return tuple(t[0].permute(1, 2, 0).numpy() for t in (y, gate, comp))


def diagnose_photo(fl, rec, rng: np.random.Generator) -> list[dict]:
    import cv2

    from facelift.albedo import delit_texture
    from facelift.evaluation import metrics as M
    from facelift.evaluation.occluders import KINDS, make_occluder, paste
    from facelift.evaluation.runner import albedos_for_texture

    fan, maps = fl.fan, rec.maps
    if fan is None or fan.config.get("output_activation") != "gated":
        raise ValueError("diagnose_occlusion needs a bundle whose FAN has a gated output")
    if int(fan.config["resolution"]) != maps.texture.shape[0]:
        raise ValueError("diagnose_occlusion runs the FAN at the unwrap resolution; they differ in this bundle")
    tex, R = maps.texture, maps.texture.shape[0]
    visible = (maps.visibility > 0.5) & maps.mask
    fan0, pca0, _ = albedos_for_texture(fl, maps, tex)
    s0 = fl.network_inputs(maps)
    _, gate0, comp0 = run_fan(fan, s0)
    blur0 = np.stack([cv2.GaussianBlur(fan0[..., c], (0, 0), 4) for c in range(3)], -1)
    rows = []
    for kind in KINDS:
        alpha, colour = make_occluder(kind, fl.face_model, R, rng)
        occ, region = paste(tex, alpha, colour, visible)
        if not region.any():
            continue
        fan1, pca1, _ = albedos_for_texture(fl, maps, occ)
        s1 = fl.network_inputs(dataclasses.replace(maps, texture=occ))
        _, gate1, comp1 = run_fan(fan, s1)
        d = M.masked_l1(occ, tex, region)

        def ratio(a, b=fan0):
            return M.masked_l1(a, b, region) / d

        vis1 = s1["visibility"][..., 0]
        delit_clean_light = delit_texture(occ, s0["shading"], vis1).astype(np.float32)
        conf_0 = np.where(region[..., None], 0.0, s1["confidence"]).astype(np.float32)
        swaps = {"oracle_stiff": {"albedo_stiff": s0["albedo_stiff"]}, "oracle_light": {"delit": delit_clean_light},
                 "oracle_stiff_light": {"albedo_stiff": s0["albedo_stiff"], "delit": delit_clean_light},
                 "oracle_confidence_0": {"confidence": conf_0},
                 "oracle_all": {"albedo_stiff": s0["albedo_stiff"], "delit": delit_clean_light,
                                "confidence": np.where(region[..., None], 0.0, s0["confidence"]).astype(np.float32)}}
        row = {"kind": kind, "fan": ratio(fan1), "pca": ratio(pca1, pca0),
               "fan_lowpass": M.lowpass_change_ratio(fan1, fan0, occ, tex, region, visible),
               "pca_lowpass": M.lowpass_change_ratio(pca1, pca0, occ, tex, region, visible),
               "completion": ratio(comp1, comp0),
               "gate_in": float(gate1[region].mean()), "gate_clean": float(gate0[region].mean()),
               "confidence_in": float(s1["confidence"][region].mean()),
               "confidence_clean": float(s0["confidence"][region].mean()),
               "stiff_input": ratio(s1["albedo_stiff"], s0["albedo_stiff"]), "delit_input": ratio(s1["delit"], s0["delit"]),
               "floor_stiff": ratio(s0["albedo_stiff"]), "floor_pca": ratio(pca0), "floor_blur": ratio(blur0)}
        inside = maps.mask[..., None]
        for name, swap in swaps.items():
            row[name] = ratio(np.where(inside, run_fan(fan, {**s1, **swap})[0], 0.0))
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    from facelift.evaluation.occluders import KINDS

    out = {}
    for kind in (*KINDS, "all"):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        out[kind] = {"count": len(sel), **{k: float(np.nanmean([r[k] for r in sel])) if sel else None for k in KEYS}}
    return out


def main(argv=None) -> dict:
    from tqdm import tqdm

    from facelift import FaceLift
    from facelift.errors import FaceLiftError
    from facelift.evaluation.runner import collect_images, photo_seed

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="a photo or a folder of photos")
    ap.add_argument("--weights", default="checkpoints")
    ap.add_argument("--limit", type=int, default=None, help="N photos evenly spaced over the sorted list")
    ap.add_argument("--seed", type=int, default=0, help="as facelift evaluate --seed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    fl = FaceLift.from_pretrained(args.weights)
    rows, failures = [], []
    for p in tqdm(collect_images(args.images, limit=args.limit), unit="image"):
        try:
            rec = fl.reconstruct(p)
        except FaceLiftError as exc:
            failures.append({"image": str(p), "error": str(exc)})
            continue
        rows += [{"image": str(p), **r} for r in diagnose_photo(fl, rec, np.random.default_rng(photo_seed(args.seed, p)))]
    result = {"weights": str(args.weights), "seed": args.seed, "summary": summarise(rows), "rows": rows,
              "failures": failures}
    for kind, s in result["summary"].items():
        print(kind, s["count"], " ".join(f"{k} {s[k]:.3f}" for k in KEYS if s[k] is not None))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
