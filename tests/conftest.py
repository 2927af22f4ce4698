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
    """../shared; the test is skipped where it is absent (a fresh clone passes without it).
    Tests that need a particular file or folder in it ask `shared_file` instead."""
    if not SHARED.is_dir():
        pytest.skip(f"needs ../shared (not found at {SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def shared_file(shared_dir):
    """shared_file("data/faces/eval/x.jpg") -> that path in ../shared. The one rule for test data
    from ../shared: where ../shared is absent the test is skipped (by `shared_dir`); where it is
    present but the file or folder is not, the test FAILS, so that a machine with ../shared (CI)
    never passes by skipping what it was meant to check."""
    def need(relative: str | Path) -> Path:
        path = shared_dir / relative
        if not path.exists():
            pytest.fail(f"../shared is present ({shared_dir}) but {relative} is missing from it; "
                        f"restore it (or run without ../shared to skip the tests that need it)", pytrace=False)
        return path

    return need


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
