"""Train the B-Net (eq. 4: PCA albedo + SH lighting). Thin over facelift.training.loop, whose docstring
gives the Accelerate (multi-process / GPU) command, the run folder and resuming.

    python training/train_bnet.py --data /work/data/uv128/train --out /work/data/runs/bnet \
        --resolution 128 --batch-size 8 [--max-minutes M] [--set key=value ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facelift.training.loop import main  # noqa: E402

if __name__ == "__main__":
    main("bnet")
