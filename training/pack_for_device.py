"""Pack (here) and unpack (on the lent GPU machine) what a GPU training run carries:
a subset of the UV training samples and the perceptual loss's VGG-16 (facelift.training.pack).

    python training/pack_for_device.py pack --data /work/data/uv256/train --count 900 \
        --vgg ../shared/weights/vgg16_imagenet_lpips.safetensors --out device_pack
    python training/pack_for_device.py unpack --pack device_pack --out /tmp/uv256   # writes /tmp/uv256/train, vgg16.safetensors
"""

import argparse
from pathlib import Path

from facelift.training.pack import pack_samples, pack_vgg, unpack_samples, unpack_vgg

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("--data", help="pack: the shard folder to draw from")
    ap.add_argument("--count", type=int, default=900)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vgg", help="pack: VGG-16 safetensors")
    ap.add_argument("--pack", help="unpack: the packed folder")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    if a.action == "pack":
        out.mkdir(parents=True, exist_ok=True)
        n = pack_samples(a.data, out / "samples.npz", a.count, a.seed)
        v = pack_vgg(a.vgg, out / "vgg16_int8.safetensors")
        print(f"{a.count} samples: {n / 2**20:.1f} MiB; VGG-16: {v / 2**20:.1f} MiB")
    else:
        count = unpack_samples(Path(a.pack) / "samples.npz", out / "train")
        unpack_vgg(Path(a.pack) / "vgg16_int8.safetensors", out / "vgg16.safetensors")
        print(f"unpacked {count} samples to {out / 'train'}")
