"""The three published releases read as their authors' loaders read them (thincam.data.layouts).

Replicas (tests/make_replicas.py) are written from the releases' own loader code: LenslessPiCam's
``DiffuserCamMirflickr`` (BGR, upside down, im2-im1000 test), FlatNet's flatnet-gen
``dataloader.py`` (RGGB mosaics, text_files lists, the sensor window) and DMDiff's
``PairedDataset`` (sorted-index pairing, pseudo captures, 512/400 px frames of one field of view).
Each test asserts what the release's loader would hand its network.
"""

from __future__ import annotations

import numpy as np
import pytest

from make_replicas import FLATNET_WINDOW, write_dmdiff, write_flatnet, write_mirflickr
from thincam.data.h5io import read_h5
from thincam.errors import BadInputError


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    return {
        "mirflickr": write_mirflickr(root),
        "flatnet": write_flatnet(root),
        "dmdiff": write_dmdiff(root),
    }


def ingest(tmp_path, camera: dict, dataset: dict, name: str = "d", seed: int = 0) -> dict:
    from thincam.stages.calibrate import calibrate_psf
    from thincam.stages.measurements import ingest_captures

    psf = tmp_path / "psf.h5"
    calibrate_psf(camera, psf)
    outs = {split: tmp_path / f"{split}.h5" for split in ("train", "val", "test")}
    ingest_captures(str(psf), dataset, name, {k: str(v) for k, v in outs.items()}, seed)
    return {split: read_h5(path, contract="dataset") for split, path in outs.items()}


def sources(arrays) -> list[str]:
    return [s.decode() for s in arrays["source"]]


MIRFLICKR_CAMERA = {
    "kind": "capture", "channels": 3, "size": [27, 48], "pixel_pitch_um": 13.8, "seed": 0,
    "path": None, "format": "mirflickr", "dark_path": None, "bit_depth": None, "background": "corner",
    "downsample": 4, "hot_pixel_sigma": 6.0, "center": False,
}  # fmt: skip


def test_mirflickr_split_orientation_and_channels(releases, tmp_path):
    from make_replicas import MIRFLICKR_CAPTURE, lensless_capture
    from thincam.data.layouts import published_split

    root = releases["mirflickr"]
    split = published_split("mirflickr", str(root))
    assert [p.measurement.stem for p in split["test"]] == [f"im{n}" for n in range(2, 8)]
    assert [p.measurement.stem for p in split["train"]] == [f"im{n}" for n in range(1001, 1013)]
    (root / "dataset_test.csv").unlink()  # without LenslessLearning's lists, the numbering rule: <= 1000 is test
    (root / "dataset_train.csv").unlink()
    assert published_split("mirflickr", str(root)) == split

    dataset = {
        "camera": "diffusercam", "image_size": list(MIRFLICKR_CAPTURE),
        "captures": {"format": "mirflickr", "path": str(root), "background": "none", "downsample": 1},
        "operator": {"kind": "lensless", "boundary": "linear", "pinv": {"kind": "tikhonov", "lam": 1e-3, "iters": 5}},
        "splits": {"train": 5, "val": 3, "test": 4},
    }  # fmt: skip
    files = ingest(tmp_path, {**MIRFLICKR_CAMERA, "path": str(root / "psf.tiff")}, dataset)
    test, val, train = (files[s][0] for s in ("test", "val", "train"))
    number = lambda source: int(source.rsplit("/im", 1)[1].removesuffix(".npy"))
    assert all(number(s) <= 1000 for s in sources(test))
    assert all(number(s) > 1000 for s in sources(val) + sources(train))
    assert not set(sources(val)) & set(sources(train))
    assert all(s.startswith("dataset/diffuser_images/") for s in sources(test))
    # x is the stored array flipped upright with its channels reversed (BGR -> RGB)
    stored = np.load(root / test["reference_source"][0].decode())
    assert np.allclose(test["x"][0], np.moveaxis(stored[::-1, :, ::-1], -1, 0), atol=1e-6)
    # y, x and the PSF agree: y is (up to scale) the calibrated PSF convolved with x
    psf, _ = read_h5(tmp_path / "psf.h5", ["psf"], contract="psf")
    for x, y in zip(test["x"], test["y"]):
        model = np.moveaxis(lensless_capture(np.moveaxis(x, 0, -1), np.moveaxis(psf["psf"], 0, -1)), -1, 0)
        assert np.corrcoef(model.ravel(), y.ravel())[0, 1] > 0.97
        flipped = model[:, ::-1]  # the upside-down reading would not match
        assert np.corrcoef(flipped.ravel(), y.ravel())[0, 1] < 0.9


def test_mirflickr_asks_no_more_than_the_published_test_set(releases, tmp_path):
    from thincam.data.layouts import published_split
    from thincam.data.splits import split_from_published

    split = published_split("mirflickr", str(releases["mirflickr"]))
    with pytest.raises(BadInputError, match=r"datasets\.m\.splits\.test: asks for 7 .* published test split has 6"):
        split_from_published(split, {"train": 1, "val": 1, "test": 7}, 0, key="datasets.m.splits")


FLATNET_CAMERA = {
    "kind": "capture", "channels": 3, "size": [32, 35], "pixel_pitch_um": 27.6, "seed": 0,
    "path": None, "format": "flatnet", "window": list(FLATNET_WINDOW), "dark_path": None,
    "bit_depth": None, "background": "none", "downsample": 2, "hot_pixel_sigma": 6.0, "center": False,
}  # fmt: skip


def test_flatnet_bayer_window_and_text_file_split(releases, tmp_path):
    from thincam.data.ingest import read_release_frame
    from thincam.data.layouts import published_split
    from thincam.data.images import load_image

    root = releases["flatnet"]
    split = published_split("flatnet", str(root))
    train_classes = {p.measurement.parent.name for p in split["train"]}
    test_classes = {p.measurement.parent.name for p in split["test"]}
    assert len(split["train"]) == 12 and len(split["test"]) == 6 and not train_classes & test_classes
    assert all(p.measurement.stem == p.reference.stem for p in split["train"] + split["test"])

    # RGGB planes: R at [0::2,0::2], G the mean of [0::2,1::2] and [1::2,0::2], B at [1::2,1::2]
    pair = split["test"][0]
    raw = load_image(pair.measurement, bit_depth=12)[0]
    frame = read_release_frame(pair.measurement, "flatnet", bit_depth=12)
    assert frame.shape == (3, raw.shape[0] // 2, raw.shape[1] // 2)
    assert np.allclose(frame[0], raw[0::2, 0::2]) and np.allclose(frame[2], raw[1::2, 1::2])
    assert np.allclose(frame[1], 0.5 * (raw[0::2, 1::2] + raw[1::2, 0::2]))
    top, left, h, w = FLATNET_WINDOW
    windowed = read_release_frame(pair.measurement, "flatnet", bit_depth=12, window=FLATNET_WINDOW)
    assert np.array_equal(windowed, frame[:, top : top + h, left : left + w])

    dataset = {
        "camera": "phlatcam", "image_size": [32, 35],
        "captures": {"format": "flatnet", "path": str(root), "bit_depth": 12, "background": "none",
                     "window": list(FLATNET_WINDOW), "downsample": 2},
        "operator": {"kind": "lensless", "boundary": "linear", "pinv": {"kind": "tikhonov", "lam": 1e-3, "iters": 5}},
        "splits": {"train": 8, "val": 2, "test": 6},
    }  # fmt: skip
    files = ingest(tmp_path, {**FLATNET_CAMERA, "path": str(root / "phase_psf/psf.npy")}, dataset)
    test = files["test"][0]
    assert {s.split("/")[1] for s in sources(test)} == test_classes
    assert {s.split("/")[1] for s in sources(files["val"][0]) + sources(files["train"][0])} <= train_classes
    y = test["y"]
    # colour kept: the three channels differ (the mosaic's colours, not one plane repeated)
    assert not np.allclose(y[:, 0], y[:, 2], atol=1e-3)


def test_flatnet_without_split_lists_is_refused(releases, tmp_path):
    import shutil

    from thincam.data.layouts import published_split

    copy = tmp_path / "flatnet"
    shutil.copytree(releases["flatnet"], copy)
    shutil.rmtree(copy / "text_files")
    with pytest.raises(BadInputError, match=r"no text_files/ folder with FlatNet's split lists"):
        published_split("flatnet", str(copy))


DMDIFF_CAMERA = {
    "kind": "metalens", "channels": 3, "size": [9, 9], "pixel_pitch_um": 1.5, "seed": 0,
    "wavelengths_nm": [640, 550, 460], "design_wavelength_nm": 550, "focal_mm": 0.2, "aperture_um": 50.0,
    "grid": [2, 2], "psf_size": [9, 9], "max_field_deg": 30.0,
}  # fmt: skip


def test_dmdiff_pairs_by_sorted_index_registers_and_routes_pseudo_pairs(releases, tmp_path):
    from skimage.transform import resize

    from thincam.data.layouts import published_split
    from thincam.data.images import load_image

    root = releases["dmdiff"]
    split = published_split("dmdiff", str(root))
    assert len(split["train"]) == 14 and len(split["test"]) == 4
    assert [p.pseudo for p in split["train"]] == [False] * 10 + [True] * 4
    # paired by sorted index although the names differ, and names repeat across the splits
    assert [(p.source, p.reference_source) for p in split["test"][:2]] == [
        ("lr_test/0000_meta.png", "gt_test/0000.png"),
        ("lr_test/0001_meta.png", "gt_test/0001.png"),
    ]
    dataset = {
        "camera": "metalens", "image_size": [32, 32],
        "captures": {"format": "dmdiff", "path": str(root), "background": "none", "downsample": 1, "crop": [32, 32]},
        "operator": {"kind": "metalens", "pinv": {"kind": "tikhonov", "lam": 0.01, "iters": 5}},
        "splits": {"train": 11, "val": 3, "test": 4},
    }  # fmt: skip
    files = ingest(tmp_path, DMDIFF_CAMERA, dataset)
    train, val, test = (files[s][0] for s in ("train", "val", "test"))
    assert not val["pseudo"].any() and not test["pseudo"].any()
    flags = train["pseudo"]
    assert flags.sum() >= 1 and flags[len(flags) - flags.sum() :].all()  # pseudo pairs last
    assert all(("pseudo" in s) == f for s, f in zip(sources(train), flags))
    assert all(s.startswith("lr_test/") for s in sources(test))
    # the reference is registered to the capture's field of view: the two correlate as a pair
    for x, y in zip(test["x"], test["y"]):
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95
    # cropping the 64 px reference on its own grid (the old reading) covers another field of view
    reference = load_image(root / test["reference_source"][0].decode())
    own_grid = reference[:, 16:48, 16:48]
    registered = resize(reference, (3, 50, 50), anti_aliasing=True)[:, 9:41, 9:41]
    assert np.abs(test["x"][0] - registered).max() < 0.02
    assert np.abs(test["x"][0] - own_grid).mean() > 2 * np.abs(test["x"][0] - registered).mean()


def test_release_unpaired_takes_the_pseudo_flags(tmp_path):
    from thincam.data.h5io import atomic_write_h5
    from thincam.stages.dmdiff import _train_arrays

    path = tmp_path / "train.h5"
    flags = np.array([False, False, False, True, True])
    arrays = {"x": np.zeros((5, 3, 4, 4), np.float32), "y": np.zeros((5, 3, 4, 4), np.float32), "pseudo": flags}
    atomic_write_h5(path, arrays, {"split": "train"}, contract="dataset")
    assert _train_arrays(path, ["x", "y"], "release")[1] == 3
    atomic_write_h5(path, {**arrays, "pseudo": flags[::-1]}, {"split": "train"}, contract="dataset")
    with pytest.raises(BadInputError, match="pseudo-flagged images are not the last"):
        _train_arrays(path, ["x", "y"], "release")


def test_broken_links_in_a_capture_folder_are_named(tmp_path):
    from thincam.data.layouts import find_pairs

    folder = tmp_path / "p" / "measurements"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros((4, 4), np.float32))
    (folder / "b.npy").symlink_to(tmp_path / "not-fetched.npy")  # an unfetched annex object
    (folder / "c.npy").symlink_to(folder / "c.npy")  # a link loop
    with pytest.raises(BadInputError, match=r"2 entries cannot be read .*b\.npy.*c\.npy"):
        find_pairs("pairs", str(tmp_path / "p"))


def test_streamed_file_verifies_and_matches_the_arrays(tmp_path):
    from thincam.data.h5io import streaming_h5

    rows = np.random.default_rng(0).random((7, 2, 3)).astype(np.float32)
    with streaming_h5(tmp_path / "s.h5", {"y": (rows.shape, rows.dtype)}, contract="dataset") as (writers, attrs):
        for start in range(0, 7, 3):
            writers["y"].append(rows[start : start + 3])
        attrs["split"] = "test"
    arrays, attrs = read_h5(tmp_path / "s.h5", contract="dataset")
    assert np.array_equal(arrays["y"], rows) and attrs["split"] == "test"
    with pytest.raises(ValueError, match="has 3 of 7 rows"):
        with streaming_h5(tmp_path / "t.h5", {"y": (rows.shape, rows.dtype)}) as (writers, _):
            writers["y"].append(rows[:3])
    assert not (tmp_path / "t.h5").exists()  # a short file never lands under its name


def test_table_caption_names_the_published_split_and_subset():
    """report/metrics.rst renders (Jinja, as Snakemake's report does) a line per release dataset."""
    from types import SimpleNamespace

    import jinja2
    import yaml
    from workflow_helpers import REPO

    config = yaml.safe_load((REPO / "presets/nsdd_phlatcam.yaml").read_text())
    caption = jinja2.Environment().from_string((REPO / "report/metrics.rst").read_text())
    text = caption.render(snakemake=SimpleNamespace(config=config, params=SimpleNamespace(conventions="")))
    assert "phlatcam_imagenet: the flatnet release's own published split" in text
    assert "103 test images, a seeded subset where the published test part holds more" in text
