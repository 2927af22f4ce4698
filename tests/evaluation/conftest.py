import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def pipeline():
    """The shipped bundle (checkpoints/), one per session."""
    from facelift.pipeline import FaceLift

    fl = FaceLift.from_pretrained()
    yield fl
    fl.close()


@pytest.fixture(scope="session")
def face_model(pipeline):
    return pipeline.face_model
