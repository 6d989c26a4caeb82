"""An unreadable photo is skipped and reported when the caller asks, never silently."""

from PIL import Image
import pytest

from edge_sdk.calibration.photos import load_image_set
from edge_sdk.runtime.images import ImageError


def test_unreadable_photos_raise_or_are_reported(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageError):
        load_image_set([good, bad], short_side=16)
    skipped = []
    photos = load_image_set([good, bad], short_side=16, skip=lambda path, exc: skipped.append(path))
    assert [name for name, _ in photos] == ["good.png"] and skipped == [bad]
