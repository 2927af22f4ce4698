"""Argument checks shared across the package."""

from __future__ import annotations

import numpy as np


def is_int(value, *, numpy: bool = True) -> bool:
    """Whether `value` is an integer and not a bool (bool is an int subclass); with `numpy`,
    numpy integers count too."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer) if numpy else int)
