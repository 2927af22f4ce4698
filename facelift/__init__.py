"""FaceLift: one photo in, a relightable high-fidelity 3D face out."""

__version__ = "0.1.0"
