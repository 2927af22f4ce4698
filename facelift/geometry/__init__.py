"""Geometry on numpy arrays (and, for SH, torch tensors), each piece written once:

- `sh`: second-order spherical-harmonics Lambertian shading (paper eq. 3), SH rotation, lights
- `normals`: face normals (area-weighted) and unit vertex normals of a triangle mesh
- `rasterize`: which triangle, and where in it, every texel centre of a UV map falls on
- `subdivision`: Loop subdivision as linear operators on the base vertices
- `rotation`: the head pose's yaw/pitch/roll, a view's rotation, the rotation vector's exponential map

The modules are imported one by one (`from facelift.geometry.sh import irradiance`), so using
one does not load the others' dependencies.
"""
