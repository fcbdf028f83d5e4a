"""The supervised UNet baseline: it learns on tiny data, saves and loads, and is a method."""

import json

import numpy as np
import pytest
import torch

from thincam.errors import BadInputError
from thincam.models.losses import WEIGHT_FREE_NAME
from thincam.models.restorer import build_restorer, load_restorer, restore, train_restorer

CFG = {"steps": 40, "batch_size": 4, "lr": 0.003, "block_channels": [8, 16], "layers_per_block": 1}
LOSS = {"lpips_weight": 2.5, "lpips_weights_dir": None, "weight_free_weight": 0.1}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _pairs(n=8, size=16, seed=0):
    """Smooth random scenes and their 'captures': dimmed by 0.7, blurred, a little noise."""
    from torchvision.transforms.functional import gaussian_blur

    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(0, 1, (n, 3, size // 4, size // 4)).astype(np.float32))
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    y = 0.7 * gaussian_blur(x, 5, 1.0) + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return y.numpy(), x.numpy()


def test_starts_as_the_identity_and_training_reduces_the_loss(tmp_path):
    y, x = _pairs()
    unet = build_restorer(CFG, 16)
    assert torch.equal(restore(unet, torch.from_numpy(y)), torch.from_numpy(y).clamp(0, 1))
    record = train_restorer((y, x), tmp_path / "m", CFG, LOSS, seed=0)
    unet = record["phases"]["unet"]
    assert unet["final_loss"] < 0.5 * unet["first_loss"] and record["n_pairs"] == 8
    assert record["loss"] == f"l2 + 0.1 * {WEIGHT_FREE_NAME}"
    assert json.loads((tmp_path / "m" / "training.json").read_text()) == record
    assert (tmp_path / "m" / "loss.csv").read_text().splitlines()[0] == "phase,step,lr,loss,l2,perceptual,path"
    trained = load_restorer(tmp_path / "m")
    before = float(((y - x) ** 2).mean())
    after = float(((restore(trained, torch.from_numpy(y)).numpy() - x) ** 2).mean())
    assert after < 0.5 * before, (before, after)
    again = train_restorer((y, x), tmp_path / "again", CFG, LOSS, seed=0)
    assert again["phases"]["unet"]["final_loss"] == unet["final_loss"]  # seeded: the same run twice


def test_bad_config_and_pairs_name_the_problem(tmp_path):
    y, x = _pairs()
    with pytest.raises(BadInputError, match=r"missing keys \['restorer.lr', 'train.weight_free_weight'\]"):
        train_restorer((y, x), tmp_path / "m", {k: v for k, v in CFG.items() if k != "lr"},
                       {k: v for k, v in LOSS.items() if k != "weight_free_weight"}, 0)  # fmt: skip
    with pytest.raises(BadInputError, match="multiples of 8"):
        train_restorer((y, x), tmp_path / "m", {**CFG, "block_channels": [12]}, LOSS, 0)
    with pytest.raises(BadInputError, match="must be equal"):
        train_restorer((y[:2], x), tmp_path / "m", CFG, LOSS, 0)
    with pytest.raises(BadInputError, match="do not halve"):
        train_restorer((y[..., :15], x[..., :15]), tmp_path / "m", CFG, LOSS, 0)
    assert not (tmp_path / "m").exists()


def test_unet_method_restores_with_the_trained_model(tmp_path):
    """The reconstruct stage builds the method by name from the registry, like any other."""
    from thincam.registry import METHODS
    from thincam.solvers.unet import make_solver

    assert METHODS["unet"].module == "solvers.unet" and METHODS["unet"].needs == "restorer"
    y, x = _pairs()
    train_restorer((y, x), tmp_path / "m", {**CFG, "steps": 2}, LOSS, seed=0)
    context = {"models": {"restorer": str(tmp_path / "m")}, "device": "cpu"}
    solve = make_solver(None, {"batch_size": 3}, context)
    expected = restore(load_restorer(tmp_path / "m"), torch.from_numpy(y), batch_size=3)
    assert torch.equal(solve(torch.from_numpy(y), np.arange(8)), expected)
    with pytest.raises(BadInputError, match=r"does not take parameter\(s\) \['alpha'\]"):
        make_solver(None, {"alpha": 1.0}, context)
    with pytest.raises(BadInputError, match="not a trained restorer"):
        load_restorer(tmp_path)


@pytest.mark.slow
def test_training_resumes_after_kill_bit_identical(tmp_path):
    from resume_helpers import killed_and_resumed, same_files

    y, x = _pairs()
    np.savez(tmp_path / "pairs.npz", y=y, x=x)
    checkpoint = tmp_path / "checkpoint"
    cfg = {**CFG, "steps": 24, "checkpoint_every": 8}
    code = f"""
import numpy as np
from thincam.models.restorer import train_restorer
pairs = np.load(r"{tmp_path / 'pairs.npz'}")
train_restorer((pairs["y"], pairs["x"]), r"OUT", {cfg!r}, {LOSS!r}, seed=0, checkpoint_dir=r"{checkpoint}")
"""
    killed_and_resumed(code, tmp_path / "whole", tmp_path / "cut", checkpoint)
    same_files(tmp_path / "whole", tmp_path / "cut")
    same_files(tmp_path / "whole", tmp_path / "cut", "loss.csv")
