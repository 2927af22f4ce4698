"""FaceLift: one photo in, a relightable high-fidelity 3D face out."""

__all__ = ["FaceLift", "Reconstruction", "FaceLiftError", "__version__"]

from ._version import __version__
from .errors import FaceLiftError


def __getattr__(name):
    # the pipeline pulls in torch and MediaPipe; import it only when asked for
    if name in ("FaceLift", "Reconstruction"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'facelift' has no attribute {name!r}")
