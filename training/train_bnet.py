"""Train the B-Net (eq. 4: PCA albedo + SH lighting). Thin over facelift.training.loop, whose docstring
gives the Accelerate (multi-process / GPU) command, the run folder and resuming.

    python training/train_bnet.py --data /work/data/uv128/train --out /work/data/runs/bnet \
        --resolution 128 --batch-size 8 [--max-minutes M] [--set key=value ...]
"""


from facelift.training.loop import main

if __name__ == "__main__":
    main("bnet")
