"""The example photos (examples/): each listed in examples/README.md with its source and licence,
small, offered by the app, and each gives its faces (one, or two for the side-by-side montage)
through the real pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from facelift import FaceLift

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"
README = EXAMPLES_DIR / "README.md"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
PHOTOS = sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
MAX_TOTAL_BYTES = 1_500_000  # the repository stays small (issue 14)
MAX_SIDE = 1024
FACES = {"two_faces_side_by_side.jpg": 2}  # the others: one face each


def _readme_entries() -> dict[str, str]:
    """examples/README.md's sections, `## \\`name\\`` -> the text under it."""
    text = README.read_text(encoding="utf-8")
    parts = re.split(r"^## `([^`]+)`[ \t]*$", text, flags=re.MULTILINE)
    return {name: body for name, body in zip(parts[1::2], parts[2::2])}


def test_there_are_examples():
    assert len(PHOTOS) >= 5, PHOTOS


def test_every_file_is_an_image_with_an_entry_in_the_readme():
    entries = _readme_entries()
    files = {p.name for p in EXAMPLES_DIR.iterdir() if p.name != "README.md"}
    assert files == {p.name for p in PHOTOS}, "examples/ holds only the photos and README.md"
    assert set(entries) == files, "every photo has its section in examples/README.md, and no other"
    for name, body in entries.items():
        fields = dict(re.findall(r"^- (Who|Source package|Original|Changes|Licence): (.+)$", body, flags=re.MULTILINE))
        assert set(fields) == {"Who", "Source package", "Original", "Changes", "Licence"}, (name, fields)
        assert len(fields["Licence"].strip()) > 10, (name, fields["Licence"])


def test_examples_are_small():
    assert sum(p.stat().st_size for p in PHOTOS) < MAX_TOTAL_BYTES
    for path in PHOTOS:
        with Image.open(path) as im:
            assert max(im.size) <= MAX_SIDE, (path.name, im.size)
            assert im.mode == "RGB", (path.name, im.mode)


def test_the_app_offers_every_example():
    """The app lists the .png and .jpg files (its settings only: no page, no server)."""
    from demo.config import EXAMPLES

    assert [Path(p).name for p in EXAMPLES] == [p.name for p in PHOTOS]


@pytest.fixture(scope="module")
def fl():
    pipe = FaceLift.from_pretrained()
    yield pipe
    pipe.close()


@pytest.mark.parametrize("path", PHOTOS, ids=[p.name for p in PHOTOS])
@pytest.mark.integration
def test_example_reconstructs_its_faces(fl, path):
    rec = fl.reconstruct(path)
    assert len(rec.faces) == FACES.get(path.name, 1)
    assert rec.warnings == [], rec.warnings  # no face cut off or turned too far
    for face in rec.faces:
        x0, y0, x1, y1 = face.box
        assert min(x1 - x0, y1 - y0) >= 80  # the app's SMALL_FACE_PX: no blurry-texture warning
