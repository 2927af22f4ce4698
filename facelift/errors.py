"""Errors FaceLift raises. Every message is meant to be shown to a person as it is."""


class FaceLiftError(Exception):
    """Base class of every error FaceLift raises on purpose."""


class InvalidImageError(FaceLiftError):
    """The input is not a readable image (wrong format, truncated, empty, missing)."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than FaceLift accepts (decompression-bomb guard)."""


class ImageTooSmallError(InvalidImageError):
    """The image, or the face in it, is too small to reconstruct."""


class NoFaceError(FaceLiftError):
    """No face was found in the image."""


class FaceIndexError(FaceLiftError):
    """`face_index` does not name one of the faces found."""


class FaceCutOffError(FaceLiftError):
    """Too much of the face lies outside the photo (cut off by the image border)."""


class ExtremePoseError(FaceLiftError):
    """The face is turned too far from the camera (a profile) to reconstruct."""


class OutputError(FaceLiftError, OSError):
    """The output folder cannot be written (permissions, disk full, a file in the way)."""


class OutputExistsError(OutputError, FileExistsError):
    """An export would replace a folder (or file) that is not a previous FaceLift export."""


class UnknownOutputError(FaceLiftError, ValueError):
    """An export was asked for outputs FaceLift does not know (see `facelift.export.OUTPUTS`)."""


class WeightsError(FaceLiftError):
    """A weights bundle or file is missing, corrupted or incompatible."""


class RenderError(FaceLiftError):
    """No offscreen OpenGL context could be created, or rendering failed."""
