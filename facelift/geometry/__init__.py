"""Geometry on numpy arrays (and, for SH, torch tensors), each piece written once:

- `sh`: second-order spherical-harmonics Lambertian shading (paper eq. 3), SH rotation, lights

The modules are imported one by one (`from facelift.geometry.sh import irradiance`), so using
one does not load the others' dependencies.
"""
