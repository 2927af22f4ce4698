import os
from pathlib import Path

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def synthetic_model():
    from synthetic import ellipsoid_face_model

    return ellipsoid_face_model()


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"needs ../shared (not found at {SHARED})")
    return SHARED


@pytest.fixture
def with_umask():
    """with_umask(mask, function): function() run under that umask, the old one restored."""
    def run(mask: int, function):
        old = os.umask(mask)
        try:
            return function()
        finally:
            os.umask(old)

    return run
