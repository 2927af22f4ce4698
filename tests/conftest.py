"""Shared fixtures, and the test kinds.

Every test has exactly one kind marker (registered in pyproject.toml, `--strict-markers` on):
`browser` (drives Chromium), `load` (load and memory tests), `integration` (the real pipeline on
real photos, a live app server, the CLI as a subprocess or over real photos, training runs), and
`unit` (everything else). The first three are set by hand, per module (`pytestmark`) or per test;
`pytest_collection_modifyitems` below marks every test without one `unit`, and refuses a test with
two. Select with `-m unit`, `-m "integration and not slow"`, etc.
"""
import os
from pathlib import Path

import pytest

KINDS = ("unit", "integration", "browser", "load")

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


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    """A test without a kind marker is a `unit` test; one with more than one is an error."""
    for item in items:
        kinds = {m.name for m in item.iter_markers() if m.name in KINDS}
        if not kinds:
            item.add_marker(pytest.mark.unit)
        elif len(kinds) > 1:
            raise pytest.UsageError(f"{item.nodeid} has more than one kind marker: {sorted(kinds)}")
