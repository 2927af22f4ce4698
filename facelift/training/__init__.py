"""Training-side library for FaceLift (paper sections 3.2-3.4, 4.1).

The scripts in ``training/`` are thin command-line wrappers over this package:

- :mod:`facelift.training.data`      photos -> UV training samples, shards with an index, a Dataset
- :mod:`facelift.training.albedo_pca` the low-frequency albedo model learned from in-the-wild textures
- :mod:`facelift.training.losses`     the losses of eqs. 4-9
- :mod:`facelift.training.config`     config dataclasses (paper settings as defaults)
- :mod:`facelift.training.loop`       the B-Net / FAN / DRN training loops (Accelerate)
"""
