"""`edge-sdk data prepare`: local photos only, licences kept, deterministic, odd images handled."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_sdk.export.training.data import (
    DataError,
    PhotoSource,
    dep5_licences,
    find_debian_photos,
    licence_for,
    load_rgb,
    prepare_dataset,
    scan_folder,
)

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lomiri-wallpapers

Files: *
Copyright: 2020, Somebody
License: GPL-3

Files: 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2018. Sander Klootwijk
License: CC-BY-SA-4.0

Files: 16.04/seeding_by_Clements_Engelhardt.jpg
       16.04/other_by_X.jpg
Copyright: Clemens Engelhardt, 2018
License: CC0-1.0

Files: debian/*
Copyright: 2022, Packager
License: Expat
"""


def photo(seed, h, w):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


@pytest.fixture
def debian_root(tmp_path):
    root = tmp_path / "root"
    bg = root / "usr/share/backgrounds"
    bg.mkdir(parents=True)
    for i, name in enumerate(["Bridge_by_Sander_Klootwijk", "seeding_by_Clements_Engelhardt", "other_by_X",
                              "umang_by_Abhishek_Mudgal", "life_by_Aitzol"]):
        Image.fromarray(photo(i, 700 + 20 * i, 900)).save(bg / f"{name}.jpg", quality=92)
    doc = root / "usr/share/doc/lomiri-wallpapers-16.04"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    return root


def test_dep5_licences_follow_the_last_matching_stanza(tmp_path):
    path = tmp_path / "copyright"
    path.write_text(COPYRIGHT)
    stanzas = dep5_licences(path)
    assert licence_for(tmp_path / "Bridge_by_Sander_Klootwijk.jpg", stanzas) == ("CC-BY-SA-4.0", "2018. Sander Klootwijk")
    assert licence_for(tmp_path / "other_by_X.jpg", stanzas)[0] == "CC0-1.0"  # continuation line
    assert licence_for(tmp_path / "unlisted.jpg", stanzas)[0] == "GPL-3"  # "Files: *", not debian/*


def test_finds_installed_photos_with_licences_and_skips_artwork(debian_root):
    found = {p.path.rsplit("/", 1)[-1]: p for p in find_debian_photos(debian_root)}
    assert "umang_by_Abhishek_Mudgal.jpg" not in found
    assert found["Bridge_by_Sander_Klootwijk.jpg"].license == "CC-BY-SA-4.0"
    assert found["life_by_Aitzol.jpg"].license == "GPL-3"
    assert all(p.origin == "debian:lomiri-wallpapers-16.04" for p in found.values())


def test_prepare_is_deterministic_and_splits_by_image(tmp_path, debian_root):
    sources = find_debian_photos(debian_root)
    a = prepare_dataset(sources, tmp_path / "a", val_every=2, crop=128)
    b = prepare_dataset(list(reversed(sources)), tmp_path / "b", val_every=2, crop=128)
    assert a == b
    assert (tmp_path / "a/crops.json").read_bytes() == (tmp_path / "b/crops.json").read_bytes()
    for r in a["images"]:
        assert (tmp_path / "a" / r["split"] / f"{r['name']}.png").read_bytes() == \
            (tmp_path / "b" / r["split"] / f"{r['name']}.png").read_bytes()
        assert r["downscale"] >= 2.0 and r["license"] != "unknown"
    splits = {r["name"]: r["split"] for r in a["images"]}
    assert set(splits.values()) == {"train", "val"}
    crops = json.loads((tmp_path / "a/crops.json").read_text())["crops"]
    assert crops and {c[0] for c in crops} == {n for n, s in splits.items() if s == "train"}
    sizes = {r["name"]: r["size"] for r in a["images"]}
    assert all(0 <= t <= sizes[n][0] - 128 and 0 <= l <= sizes[n][1] - 128 for n, t, l in crops)
    c = prepare_dataset(sources, tmp_path / "c", val_every=2, crop=128, seed=1)
    assert [(r["name"], r["split"], r["size"]) for r in c["images"]] == [(r["name"], r["split"], r["size"]) for r in a["images"]]
    assert (tmp_path / "c/crops.json").read_bytes() != (tmp_path / "a/crops.json").read_bytes()


def test_short_side_prepares_photos_at_the_classifiers_scale_with_the_same_split(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sizes = {"wide": (375, 500), "tall": (600, 400), "small": (180, 260), "png": (450, 300)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        Image.fromarray(photo(300 + i, h, w)).save(src / f"{name}{'.png' if name == 'png' else '.jpg'}", quality=95)
    # val_every 2 holds out two of the four; "small" must land in the training split to test the crop rule
    codec = prepare_dataset(scan_folder(src, "CC0-1.0"), tmp_path / "codec", crop=64, val_every=2, protected=[])
    adapter = prepare_dataset(scan_folder(src, "CC0-1.0"), tmp_path / "adapter", crop=192, val_every=2,
                              short_side=224, protected=[])
    assert adapter["options"]["short_side"] == 224 and codec["options"]["short_side"] == 0
    by_name = {r["name"]: r for r in adapter["images"]}
    assert by_name["wide"]["size"] == [224, 299] and by_name["tall"]["size"] == [336, 224]
    assert by_name["png"]["size"] == [336, 224]  # PNGs too: the scale is the point, not JPEG blocking
    assert by_name["small"]["size"] == [180, 260] and by_name["small"]["downscale"] == 1.0  # never enlarged
    stored = load_rgb(tmp_path / "adapter" / by_name["wide"]["split"] / "wide.png")
    assert stored.shape == (224, 299, 3)
    # the split is the content hashes' alone: a held-out photo of the codec's set is held out in the adapter's
    assert {r["name"]: r["split"] for r in codec["images"]} == {n: r["split"] for n, r in by_name.items()}
    crops = json.loads((tmp_path / "adapter/crops.json").read_text())["crops"]
    # shorter than the crop: in training, without crops
    assert by_name["small"]["split"] == "train" and by_name["small"]["crops"] == 0
    assert "small" not in {c[0] for c in crops}
    assert {c[0] for c in crops} == {n for n, r in by_name.items() if r["split"] == "train" and n != "small"}


def test_odd_images_become_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(photo(1, 300, 300)[..., 0]).save(gray)
    rgba = tmp_path / "rgba.png"
    arr = np.dstack([photo(2, 300, 300), np.full((300, 300), 128, np.uint8)])
    Image.fromarray(arr, "RGBA").save(rgba)
    deep = tmp_path / "deep.png"
    Image.fromarray((photo(3, 300, 300)[..., 1].astype(np.uint16) * 257)).save(deep)
    pal = tmp_path / "pal.png"
    Image.fromarray(photo(4, 300, 300)).convert("P").save(pal)
    for p in (gray, rgba, deep, pal):
        img = load_rgb(p)
        assert img.dtype == np.uint8 and img.shape == (300, 300, 3)
    assert abs(int(load_rgb(deep)[5, 5, 0]) - int(photo(3, 300, 300)[5, 5, 1])) <= 1


def test_bad_inputs_are_clear_and_lose_nothing(tmp_path):
    with pytest.raises(DataError, match="no photos"):
        prepare_dataset([], tmp_path / "x")
    broken = tmp_path / "in" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode"):
        prepare_dataset(scan_folder(broken.parent, "CC0-1.0"), tmp_path / "x")
    assert not (tmp_path / "x").exists() and [p.name for p in tmp_path.iterdir()] == ["in"]
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.fromarray(photo(0, 40, 40)).save(tiny / "t.png")
    with pytest.raises(DataError, match="large enough"):
        prepare_dataset(scan_folder(tiny, "CC0-1.0", split="train"), tmp_path / "y")
    (tmp_path / "z").mkdir()
    with pytest.raises(DataError, match="already exists"):
        prepare_dataset([PhotoSource(str(tiny / "t.png"), "CC0-1.0", "", "x")], tmp_path / "z")


def test_cli_prepare_from_a_folder(tmp_path):
    from typer.testing import CliRunner

    from edge_sdk.cli import app

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(photo(i, 400, 500)).save(folder / f"p{i}.png")
    result = CliRunner().invoke(app, ["data", "prepare", "--out", str(tmp_path / "ds"), "--source", str(folder),
                                      "--licence", "CC0-1.0", "--no-default-sources", "--val-every", "2",
                                      "--crop", "128", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert counts["train_images"] == 2 and counts["val_images"] == 2 and counts["licences"] == ["CC0-1.0"]
    again = CliRunner().invoke(app, ["data", "prepare", "--out", str(tmp_path / "ds"), "--no-default-sources",
                                     "--source", str(folder)])
    assert again.exit_code == 2 and "already exists" in again.output


def _shared_layout(root):
    """A stand-in for ../shared/data: an ImageNet-style val split and a Kodak folder."""
    (root / "imagenet-sample/val").mkdir(parents=True)
    (root / "kodak").mkdir()
    Image.fromarray(photo(100, 375, 500)).save(root / "imagenet-sample/val/n0000_val.JPEG", quality=90)
    Image.fromarray(photo(101, 512, 768)).save(root / "kodak/kodim01.png")
    return root


def test_evaluation_sets_never_enter_a_training_set(tmp_path, monkeypatch):
    shared = _shared_layout(tmp_path / "shared_data")
    monkeypatch.setenv("EDGE_SDK_SHARED_DATA", str(shared))
    from edge_sdk.export.training.data import default_protected_folders

    assert sorted(p.name for p in default_protected_folders()) == ["kodak", "val"]
    # the folders themselves are refused outright
    for folder in ("kodak", "imagenet-sample/val"):
        with pytest.raises(DataError, match="evaluation set"):
            prepare_dataset(scan_folder(shared / folder, "x"), tmp_path / "refused", crop=128)
    # copies elsewhere (re-encoded as JPEG, resized, centre-cropped) are left out and listed
    src = tmp_path / "elsewhere"
    src.mkdir()
    kodak = np.asarray(Image.open(shared / "kodak/kodim01.png"))
    Image.fromarray(kodak).resize((384, 256), Image.LANCZOS).save(src / "kodak_small.jpg", quality=80)
    val = np.asarray(Image.open(shared / "imagenet-sample/val/n0000_val.JPEG"))
    Image.fromarray(val[:, 62:437]).resize((224, 224)).save(src / "val_square.png")
    for i in range(4):
        Image.fromarray(photo(200 + i, 400, 500)).save(src / f"own{i}.png")
    manifest = prepare_dataset(scan_folder(src, "CC0-1.0"), tmp_path / "ds", crop=128, val_every=3)
    excluded = {Path(e["source"]).name: e for e in manifest["excluded"]}
    assert set(excluded) == {"kodak_small.jpg", "val_square.png"}
    assert all(e["reason"] == "evaluation photo" for e in excluded.values())
    assert excluded["kodak_small.jpg"]["matches"].endswith("kodim01.png")
    kept = {r["name"] for r in manifest["images"]}
    assert kept == {f"own{i}" for i in range(4)}
    assert manifest["protected"] == [str(p) for p in default_protected_folders()]


def test_near_duplicates_count_once_and_different_photos_do_not_match(tmp_path):
    from edge_sdk.export.training.data import same_picture, thumbnail_fingerprints

    a, b = photo(1, 300, 400), photo(2, 300, 400)
    assert same_picture(thumbnail_fingerprints(a), thumbnail_fingerprints(b)) < 0.9
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(a).save(src / "a.png")
    Image.fromarray(a).save(src / "a_again.jpg", quality=85)
    Image.fromarray(b).save(src / "b.png")
    manifest = prepare_dataset(scan_folder(src, "CC0-1.0"), tmp_path / "ds", crop=128, protected=[])
    assert len(manifest["images"]) == 2 and [e["reason"] for e in manifest["excluded"]] == ["near-duplicate"]


def test_git_mirror_photos_record_repository_commit_path_and_licence(tmp_path):
    import subprocess

    from edge_sdk.export.training.data import find_repo_photos

    work = tmp_path / "work"
    (work / "set").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(photo(300 + i, 300, 400)).save(work / "set" / f"p{i}.png")
    (work / "set" / "notes.txt").write_text("not a photo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(git[:5] + ["init", "-q", str(work)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "photos"], check=True)
    mirrors = tmp_path / "mirrors"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(mirrors / "someone+photos" / "repo")], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    found, missing = find_repo_photos(mirrors, sets=(("someone/photos", ("set",), "CC0-1.0"),
                                                     ("nobody/absent", ("x",), "MIT")))
    assert missing == ["nobody/absent"]
    assert sorted(s.repo_path for s in found) == ["set/p0.png", "set/p1.png", "set/p2.png"]
    manifest = prepare_dataset(found, tmp_path / "ds", crop=128, protected=[], val_every=3)
    rec = manifest["images"][0]
    assert rec["repo"] == "someone/photos" and rec["commit"] == commit and rec["license"] == "CC0-1.0"
    assert rec["repo_path"].startswith("set/p")
    assert (tmp_path / "ds" / rec["split"] / f"{rec['name']}.png").is_file()


def test_shared_evaluation_photos_are_refused_when_present():
    """On machines with ../shared/data (CI's), the real Kodak and ImageNet val folders cannot be sources."""
    from edge_sdk.export.training.data import default_protected_folders, shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / "kodak").is_dir():
        pytest.skip("no shared data folder here")
    assert {root / "kodak", root / "imagenet-sample/val"} <= set(default_protected_folders())
    with pytest.raises(DataError, match="evaluation set"):
        prepare_dataset(scan_folder(root / "kodak", "x"), Path("/nonexistent/never-written"), crop=128)
