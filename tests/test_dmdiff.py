"""DMDiff: offline tokenizer, exact LoRA/SVDA identities, training scope, alpha endpoints,
save/load, determinism, and a tiny pretrain -> train -> pseudo pairs -> retrain -> restore run."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from thincam.errors import BadInputError, MissingWeightsError
from thincam.models.dmdiff.architecture import (
    gaussian_lowpass,
    load_dmdiff_base,
    one_step_x0,
    prompt_embeddings,
)
from thincam.models.dmdiff.lora import ADAPTER, lora_layers
from thincam.models.dmdiff.model import PATHS, DMDiff, load_dmdiff
from thincam.models.dmdiff.pretrain import described_views, pretrain_dmdiff_base
from thincam.models.dmdiff.pseudo import make_pseudo_pairs
from thincam.models.dmdiff.restore import restore, restore_sweep
from thincam.models.dmdiff.svda import (
    MUSIQ_FILE,
    LaplacianQuality,
    MusiqQuality,
    SVDAModule,
    degradation_map,
    make_quality,
    quality_by_name,
)
from thincam.models.dmdiff.tokenizer import build_tokenizer, check_tokenizer, write_bpe_vocab
from thincam.models.dmdiff.train import TRAIN_DEFAULTS, train_dmdiff
from thincam.models.losses import WEIGHT_FREE_NAME

PROMPTS = {
    "positive": "a sharp clean high quality photo",
    "neutral": "a smooth soft low pass filtered photo",
    "negative": "a blurry noisy metalens capture",
}
# A micro base: the same classes as the default, small enough for unit tests on 2 shared cores.
MICRO = {
    "vae_channels": [8, 16, 16],
    "latent_channels": 4,
    "unet_channels": [16, 32],
    "text_dim": 16,
    "text_layers": 1,
    "max_prompt_tokens": 12,
    "prompts": PROMPTS,
    "vae_steps": 3,
    "unet_steps": 3,
    "batch_size": 4,
    "lr": 0.001,
    "kl_weight": 0.001,
    "unet_noise_max": 0.5,
}
TRAIN = {
    **TRAIN_DEFAULTS,
    "steps": 2,
    "batch_size": 2,
    "rank_vae": 2,
    "rank_unet": 2,
    "svda_hidden": 16,
}
FWHM = np.array([[3.7, 2.5, 3.7], [2.5, 1.7, 2.5], [3.7, 2.5, 3.7]], dtype=np.float32)


def _images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Random square crops of scikit-image's RGB photos, resized to size x size."""
    from skimage import data
    from skimage.transform import resize

    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % 3] / 255.0
        side = int(rng.integers(64, 160))
        y0, x0 = (int(rng.integers(0, s - side)) for s in photo.shape[:2])
        crop = resize(photo[y0 : y0 + side, x0 : x0 + side], (size, size), anti_aliasing=True)
        out.append(crop.transpose(2, 0, 1))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def _captures(x: np.ndarray, seed: int = 1) -> np.ndarray:
    """Stand-in metalens captures: Gaussian blur (sigma 1 px, FWHM ~2.4) plus read noise."""
    blurred = gaussian_lowpass(torch.from_numpy(x), 1.0).numpy()
    noise = 0.01 * np.random.default_rng(seed).standard_normal(x.shape)
    return np.clip(blurred + noise, 0, 1).astype(np.float32)


def _model_cfg(base_dir, **overrides) -> dict:
    return {
        "base_dir": str(base_dir),
        "rank_vae": 2,
        "rank_unet": 2,
        "svda": True,
        "use_fwhm": True,
        "map_size": 4,
        "svda_hidden": 16,
        "prompts": PROMPTS,
        "score": LaplacianQuality.name,
        "musiq_weights_dir": None,
        **overrides,
    }


def _randomise_lora(model: DMDiff, seed: int = 0, scale: float = 0.05) -> None:
    """Non-zero B (peft starts at B = 0) and SVDA heads, so every path and block differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.base.vae.encoder, model.base.unet):
            for name, p in module.named_parameters():
                if "lora_B" in name:
                    p.copy_(scale * torch.randn(p.shape, generator=gen))
        if model.svda is not None:
            for head in model.svda.heads:
                head.weight.copy_(0.2 * torch.randn(head.weight.shape, generator=gen))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here: tiny models gain nothing from two, and on the shared 2-core machine
    OpenMP spin-waiting made a training step 20-100x slower with two (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmdiff") / "base"
    pretrain_dmdiff_base(_images(8), out, MICRO, seed=0)
    return out


@pytest.fixture(scope="module")
def batch():
    x = _images(4, seed=3)
    return torch.from_numpy(_captures(x)), torch.from_numpy(x)


def test_offline_tokenizer_gives_distinct_ids_and_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    write_bpe_vocab(["sharp", "blurry", "photo", "metalens"], tmp_path / "tok")
    tokenizer = build_tokenizer(tmp_path / "tok", 12)
    vocab = json.loads((tmp_path / "tok" / "vocab.json").read_text())
    assert len(tokenizer) == len(vocab)
    ids = [tokenizer(p).input_ids for p in ("a sharp photo", "a blurry photo", "metalens")]
    assert len({tuple(i) for i in ids}) == 3
    assert tokenizer.convert_ids_to_tokens(ids[2]) == [
        "<|startoftext|>",
        "metalens</w>",
        "<|endoftext|>",
    ]
    # A word outside the vocabulary falls back to byte-level pieces, never to the unk id.
    assert tokenizer.unk_token_id not in tokenizer("zebra").input_ids[1:-1]
    tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = CLIPTokenizer.from_pretrained(tmp_path / "saved", local_files_only=True)
    assert [reloaded(p).input_ids for p in ("a sharp photo", "a blurry photo", "metalens")] == ids
    check_tokenizer(reloaded, ["a sharp photo", "a blurry photo"], vocab_size=len(vocab))
    with pytest.raises(BadInputError, match="expects"):
        check_tokenizer(reloaded, ["a sharp photo"], vocab_size=len(vocab) + 1)
    # The offline trap: a placeholder tokenizer maps every word to one id, and is rejected.
    with pytest.raises(BadInputError):
        check_tokenizer(CLIPTokenizer(), ["a sharp photo", "a blurry photo"])


def test_pretrained_base_layout_and_loading(base_dir, tmp_path):
    for sub in ("vae", "unet", "text_encoder", "tokenizer", "scheduler"):
        assert (base_dir / sub).is_dir()
    with open(base_dir / "loss.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["phase"] for r in rows] == ["vae"] * 3 + ["unet"] * 3
    summary = json.loads((base_dir / "training.json").read_text())
    base = load_dmdiff_base(base_dir)
    assert base.vae.config.scaling_factor == pytest.approx(summary["vae_scaling_factor"])
    assert summary["vae_scaling_factor"] != 1.0
    assert len(base.tokenizer) == base.text_encoder.config.vocab_size
    assert all(not p.requires_grad for p in base.unet.parameters())

    # SD-Turbo's layout: a tokenizer as vocab.json + merges.txt only, an Euler scheduler config.
    from diffusers import EulerDiscreteScheduler

    turbo_like = tmp_path / "turbo_like"
    shutil.copytree(base_dir, turbo_like)
    (turbo_like / "tokenizer" / "tokenizer.json").unlink()
    shutil.rmtree(turbo_like / "scheduler")
    EulerDiscreteScheduler.from_config(
        base.scheduler.config, timestep_spacing="trailing"
    ).save_pretrained(turbo_like / "scheduler")
    other = load_dmdiff_base(turbo_like)
    assert (
        other.tokenizer(PROMPTS["negative"]).input_ids
        == base.tokenizer(PROMPTS["negative"]).input_ids
    )
    assert torch.equal(other.scheduler.alphas_cumprod, base.scheduler.alphas_cumprod)

    with pytest.raises(MissingWeightsError, match=str(tmp_path / "nowhere")):
        load_dmdiff_base(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    shutil.copytree(base_dir, partial, ignore=shutil.ignore_patterns("tokenizer"))
    with pytest.raises(MissingWeightsError, match="tokenizer/"):
        load_dmdiff_base(partial)


def test_described_views_give_each_prompt_its_meaning():
    """Base pretraining targets: positive = the image, neutral = a low-pass, negative = noisier."""
    x = torch.from_numpy(_images(4, seed=3))
    views = described_views(x, torch.Generator().manual_seed(0))
    positive, neutral, negative = views
    assert views.shape == (3, *x.shape)
    assert torch.equal(positive, x)

    def detail(images):  # high-frequency energy: mean squared Laplacian
        lap = images[..., 1:-1, 2:] + images[..., 1:-1, :-2] + images[..., 2:, 1:-1]
        return ((lap + images[..., :-2, 1:-1] - 4 * images[..., 1:-1, 1:-1]) ** 2).mean()

    assert detail(neutral) < 0.5 * detail(positive)
    assert detail(negative) > detail(neutral)  # noise on top of the same low-pass
    assert torch.allclose(negative.mean(), neutral.mean(), atol=0.02)
    assert 0 <= negative.min() and negative.max() <= 1
    again = described_views(x, torch.Generator().manual_seed(0))
    assert torch.equal(again, views)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_one_step_x0_inverts_the_forward_process(kind):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type=kind
    )
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    abar = scheduler.alphas_cumprod[999]
    z_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    target = {
        "epsilon": noise,
        "v_prediction": abar.sqrt() * noise - (1 - abar).sqrt() * x0,
        "sample": x0,
    }[kind]
    assert torch.allclose(one_step_x0(scheduler, z_t, target, 999), x0, atol=1e-4)


def test_degradation_map_channels():
    x = torch.from_numpy(_images(2, seed=4))
    blurred = gaussian_lowpass(x, 1.5)
    dmap = degradation_map(FWHM, torch.cat([x, blurred]), 4)
    assert dmap.shape == (4, 2, 4, 4)
    # FWHM channel: bilinear with the grid's corners at the map's corners, log2 scale.
    assert torch.allclose(dmap[0, 0, 0, 0], torch.tensor(np.log2(3.7), dtype=torch.float32))
    assert torch.equal(dmap[0, 0], dmap[3, 0])
    assert dmap[0, 0, 1, 1] < dmap[0, 0, 0, 0]
    # Quality channel: blur lowers the Laplacian-variance score in every patch.
    assert torch.all(dmap[2:, 1] < dmap[:2, 1])
    assert make_quality(None).name == LaplacianQuality.name
    with pytest.raises(MissingWeightsError, match="musiq"):
        quality_by_name("musiq", None)
    with pytest.raises(BadInputError):
        degradation_map(np.zeros((3, 3)), x, 4)


def test_svda_starts_at_identity_and_fwhm_ablation_ignores_fwhm():
    blocks = {"vae.conv_in": 2, "unet.mid_block": 3}
    dmap = torch.rand(5, 2, 4, 4)
    q = SVDAModule(blocks, 4)(dmap)
    assert q["unet.mid_block"].shape == (5, 3, 3)
    assert torch.equal(q["vae.conv_in"], torch.eye(2).expand(5, 2, 2))
    ablated = SVDAModule(blocks, 4, use_fwhm=False)
    with torch.no_grad():
        for head in ablated.heads:
            head.weight.normal_()
    other = dmap.clone()
    other[:, 0] += 1.0
    assert torch.equal(ablated(dmap)["unet.mid_block"], ablated(other)["unet.mid_block"])
    assert not torch.equal(ablated(dmap)["unet.mid_block"], ablated(dmap.flip(0))["unet.mid_block"])


def test_fresh_lora_with_identity_q_leaves_base_output_unchanged(base_dir, batch):
    y, _ = batch
    base = load_dmdiff_base(base_dir)
    with torch.no_grad():
        sf = base.vae.config.scaling_factor
        z = base.vae.encode(2 * y - 1).latent_dist.mode() * sf
        cond = prompt_embeddings(base, [PROMPTS[p] for p in PATHS])[0].expand(len(y), -1, -1)
        eps = base.unet(z, 999, encoder_hidden_states=cond).sample
        reference = (base.vae.decode(one_step_x0(base.scheduler, z, eps, 999) / sf).sample + 1) / 2
        model = DMDiff(base, _model_cfg(base_dir))
        dmap = model.degradation(y, FWHM)
        assert all(
            torch.equal(q, torch.eye(2).expand(len(y), 2, 2)) for q in model.q(dmap).values()
        )
        assert torch.equal(model.translate(y, dmap, "positive"), reference)


def test_identity_q_reproduces_plain_peft_lora(base_dir, batch):
    y, _ = batch
    model = DMDiff(load_dmdiff_base(base_dir), _model_cfg(base_dir, svda=False))
    _randomise_lora(model)
    n = len(y)
    with torch.no_grad():
        z_plain = model.denoise(model.encode(y, None), "positive", None)  # plain peft LoRA
        eye = {block: torch.eye(r).expand(n, r, r) for block, r in model.modulation.blocks.items()}
        assert torch.equal(model.denoise(model.encode(y, eye), "positive", eye), z_plain)
        gen = torch.Generator().manual_seed(1)
        mixed = {b: q + 0.5 * torch.randn(q.shape, generator=gen) for b, q in eye.items()}
        assert not torch.equal(model.denoise(model.encode(y, mixed), "positive", mixed), z_plain)

        # One conv layer by hand: W x + scaling * B (Q A x), Q mixing A's output channels.
        layer = lora_layers(model.base.unet)["down_blocks.0.resnets.0.conv1"]
        h = torch.randn(n, layer.base_layer.in_channels, 8, 8, generator=gen)
        q = torch.randn(n, 2, 2, generator=gen)
        with model.modulation.use({**eye, "unet.down_blocks.0": q}):
            got = layer(h)
        a_out = torch.einsum("bij,bjhw->bihw", q, layer.lora_A[ADAPTER](h))
        expected = layer.base_layer(h) + layer.scaling[ADAPTER] * layer.lora_B[ADAPTER](a_out)
        assert torch.allclose(got, expected, atol=1e-6)


def test_training_steps_change_only_lora_and_svda(base_dir, batch):
    y, x = batch
    base = load_dmdiff_base(base_dir)
    frozen = [
        (f"{tag}.{name}", p, p.detach().clone())
        for tag, module in (("vae", base.vae), ("unet", base.unet), ("text", base.text_encoder))
        for name, p in module.named_parameters()
    ]
    torch.manual_seed(0)
    model = DMDiff(base, _model_cfg(base_dir))
    trainable = model.trainable_parameters()
    before = [p.detach().clone() for p in trainable]
    assert not {id(p) for p in trainable} & {id(p) for _, p, _ in frozen}
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    dmap = model.degradation(y, FWHM)
    for path, inputs, target in (("positive", y, x), ("negative", x, y), ("neutral", y, x)):
        loss = torch.nn.functional.mse_loss(model.translate(inputs, dmap, path), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert np.isfinite(loss.item())
    changed = [n for n, p, old in frozen if not torch.equal(p, old)]
    assert changed == []
    svda_ids = {id(p) for p in model.svda.parameters()}
    moved = [not torch.equal(p, old) for p, old in zip(trainable, before, strict=True)]
    assert any(m for p, m in zip(trainable, moved, strict=True) if id(p) in svda_ids)
    assert any(m for p, m in zip(trainable, moved, strict=True) if id(p) not in svda_ids)


def test_alpha_endpoints_reproduce_single_prompt_outputs(base_dir, batch):
    y, _ = batch
    model = DMDiff(load_dmdiff_base(base_dir), _model_cfg(base_dir))
    _randomise_lora(model)
    with torch.no_grad():
        dmap = model.degradation(y, FWHM)
        positive = model.translate(y, dmap, "positive").clamp(0, 1)
        neutral = model.translate(y, dmap, "neutral").clamp(0, 1)
    assert not torch.equal(positive, neutral)
    assert torch.equal(restore(model, y, FWHM, 1.0), positive)
    assert torch.equal(restore(model, y.numpy(), FWHM, 0.0), neutral)
    sweep = restore_sweep(model, y, FWHM, [0.0, 0.5, 1.0])
    assert torch.equal(sweep[0], neutral) and torch.equal(sweep[2], positive)
    assert not torch.equal(sweep[1], positive) and not torch.equal(sweep[1], neutral)
    # Batches of 3 + 1: the same images (bitwise equality only holds at equal batch sizes).
    assert torch.allclose(
        restore_sweep(model, y, FWHM, [0.0, 0.5, 1.0], batch_size=3), sweep, atol=1e-5
    )
    with pytest.raises(BadInputError, match="multiples"):
        restore(model, y[..., :30], FWHM, 1.0)


def test_save_then_load_gives_identical_outputs(base_dir, batch, tmp_path):
    y, x = batch
    model = DMDiff(load_dmdiff_base(base_dir), _model_cfg(base_dir))
    _randomise_lora(model, seed=2)
    model.save(tmp_path / "model")
    assert (tmp_path / "model" / "unet_lora" / "adapter_model.safetensors").is_file()
    loaded = load_dmdiff(tmp_path / "model")
    assert loaded.config == model.config
    # A loaded model is frozen; torch's linear kernels round differently when a weight requires
    # grad (measured: 1 ulp), so freeze the in-memory one too before comparing bits.
    for p in model.trainable_parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        dmap = model.degradation(x, FWHM)
        assert torch.equal(
            loaded.translate(x, dmap, "negative"), model.translate(x, dmap, "negative")
        )
    assert torch.equal(restore(loaded, y, FWHM, 0.7), restore(model, y, FWHM, 0.7))
    with pytest.raises(MissingWeightsError, match="dmdiff_config.json"):
        load_dmdiff(tmp_path / "nothing")


def test_training_is_deterministic_and_validates_config(base_dir, tmp_path):
    x = _images(6, seed=5)
    pairs = (_captures(x), x)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        train_dmdiff(base_dir, pairs, FWHM, tmp_path / name, TRAIN, seed=seed)
    files = ("unet_lora/adapter_model.safetensors", "vae_encoder_lora/adapter_model.safetensors",
             "svda.safetensors", "loss.csv", "unet_lora/adapter_config.json",
             "vae_encoder_lora/adapter_config.json")  # fmt: skip
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()
    # peft writes target_modules from a set, whose order follows PYTHONHASHSEED: saved sorted
    targets = json.loads((tmp_path / "a" / files[4]).read_text())["target_modules"]
    assert targets == sorted(targets)
    config = json.loads((tmp_path / "a" / "dmdiff_config.json").read_text())
    weight = TRAIN_DEFAULTS["weight_free_weight"]  # no LPIPS weights: the weight-free term
    assert config["score"] == LaplacianQuality.name
    assert json.loads((tmp_path / "a" / "training.json").read_text())["loss"] == f"l2 + {weight} * {WEIGHT_FREE_NAME}"
    assert config["svda"] and config["use_fwhm"] and config["rank_unet"] == 2

    with pytest.raises(BadInputError, match="sum to 1"):
        train_dmdiff(base_dir, pairs, FWHM, tmp_path / "d", {**TRAIN, "p_neg": 0.5}, seed=0)
    with pytest.raises(BadInputError, match="lowpass_sigma"):
        train_dmdiff(
            base_dir,
            pairs,
            FWHM,
            tmp_path / "d",
            {k: v for k, v in TRAIN.items() if k != "lowpass_sigma"},
            0,
        )
    assert not (tmp_path / "d").exists()


def test_lpips_term_enters_the_loss_when_its_weights_exist(base_dir, tmp_path):
    """Plumbing only: a randomly initialised AlexNet trunk stands in for the real weights."""
    import torchvision

    weights = tmp_path / "weights" / "hub" / "checkpoints"
    weights.mkdir(parents=True)
    trunk = torchvision.models.alexnet().features.state_dict()
    torch.save({f"features.{k}": v for k, v in trunk.items()}, weights / "alexnet-owt-7be5be79.pth")
    x = _images(4, seed=5)
    cfg = {**TRAIN, "lpips_weights_dir": str(tmp_path / "weights")}
    train_dmdiff(base_dir, (_captures(x), x), FWHM, tmp_path / "m", cfg, seed=0)
    with open(tmp_path / "m" / "loss.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert float(row["perceptual"]) > 0
        assert float(row["loss"]) == pytest.approx(
            float(row["l2"]) + 2.5 * float(row["perceptual"]), rel=1e-4
        )
    assert json.loads((tmp_path / "m" / "training.json").read_text())["loss"] == "l2 + 2.5 * lpips(alex)"
    with pytest.raises(MissingWeightsError, match="alexnet-owt"):
        train_dmdiff(
            base_dir,
            (_captures(x), x),
            FWHM,
            tmp_path / "n",
            {**cfg, "lpips_weights_dir": str(tmp_path)},
            0,
        )


def test_weight_free_term_enters_the_loss_without_lpips_weights(base_dir, tmp_path):
    """No LPIPS weights: L2 + weight_free_weight * the weight-free term, logged per step and named
    in the config; weight 0 is L2 alone."""
    x = _images(4, seed=5)
    for weight, name in ((0.3, f"l2 + 0.3 * {WEIGHT_FREE_NAME}"), (0.0, "l2")):
        out = tmp_path / f"w{weight}"
        train_dmdiff(base_dir, (_captures(x), x), FWHM, out, {**TRAIN, "weight_free_weight": weight}, seed=0)
        with open(out / "loss.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert json.loads((out / "training.json").read_text())["loss"] == name
        for row in rows:
            if weight:
                assert float(row["perceptual"]) > 0
                assert float(row["loss"]) == pytest.approx(float(row["l2"]) + weight * float(row["perceptual"]), rel=1e-4)
            else:
                assert row["perceptual"] == "" and row["loss"] == row["l2"]
    with pytest.raises(BadInputError, match="weight_free_weight must be >= 0"):
        train_dmdiff(base_dir, (_captures(x), x), FWHM, tmp_path / "bad", {**TRAIN, "weight_free_weight": -1}, 0)


@pytest.mark.slow
def test_musiq_branch_runs_from_a_local_weights_file(tmp_path):
    """Plumbing only: random MUSIQ weights in the expected layout (never a reported score)."""
    import pyiqa

    metric = pyiqa.create_metric("musiq", pretrained=False, device="cpu")
    (tmp_path / MUSIQ_FILE).parent.mkdir(parents=True)
    torch.save(metric.net.state_dict(), tmp_path / MUSIQ_FILE)
    quality = make_quality(tmp_path)
    assert isinstance(quality, MusiqQuality) and quality_by_name("musiq", tmp_path).name == "musiq"
    dmap = degradation_map(FWHM, torch.from_numpy(_images(2)), 2, quality)
    assert dmap.shape == (2, 2, 2, 2) and torch.isfinite(dmap).all()


@pytest.mark.slow
def test_pretrain_train_pseudo_retrain_restore(tmp_path):

    x = _images(16, seed=6)
    y = _captures(x)
    pretrain_dmdiff_base(
        x, tmp_path / "base", {**MICRO, "vae_steps": 30, "unet_steps": 20, "batch_size": 8}, 0
    )
    cfg = {
        **TRAIN,
        "steps": 30,
        "batch_size": 4,
        "lr": 2e-3,
        "p_pos": 0.5,
        "p_neu": 0.1,
        "p_neg": 0.4,
    }
    train_dmdiff(tmp_path / "base", (y, x), FWHM, tmp_path / "stage1", cfg, seed=0)

    clean = _images(8, seed=9)
    arrays, attrs = make_pseudo_pairs(tmp_path / "stage1", clean, FWHM, batch_size=5)
    assert arrays["y_pseudo"].shape == clean.shape and np.array_equal(arrays["x_clean"], clean)
    assert arrays["index"].tolist() == list(range(8)) and attrs["prompt"] == PROMPTS["negative"]
    assert 0 <= arrays["y_pseudo"].min() and arrays["y_pseudo"].max() <= 1

    train_dmdiff(
        tmp_path / "base",
        (y, x),
        FWHM,
        tmp_path / "stage2",
        cfg,
        seed=0,
        pseudo_pairs=(arrays["y_pseudo"], arrays["x_clean"]),
    )
    assert json.loads((tmp_path / "stage2" / "training.json").read_text())["n_pseudo"] == 8

    fresh = DMDiff(load_dmdiff_base(tmp_path / "base"), _model_cfg(tmp_path / "base"))
    trained = load_dmdiff(tmp_path / "stage2")
    before = float(((restore(fresh, y, FWHM, 1.0).numpy() - x) ** 2).mean())
    after = float(((restore(trained, y, FWHM, 1.0).numpy() - x) ** 2).mean())
    assert after < before, (before, after)


# --- workflow stages on dataset files, and the `dmdiff` reconstruction method -------------------


@pytest.fixture(scope="module")
def metalens_splits(tmp_path_factory):
    """Real simulated metalens files: the default camera's PSF grid, 8 train / 2 test crops."""
    from workflow_helpers import tiny_config

    from thincam.stages.calibrate import calibrate_psf
    from thincam.stages.measurements import simulate_measurements

    out = tmp_path_factory.mktemp("metalens")
    config = tiny_config()
    calibrate_psf(config["cameras"]["metalens"], out / "psf.h5")
    dataset = {
        **config["datasets"]["natural_metalens"],
        "source": {"kind": "skimage_rgb_crops", "n_images": 10},
        "splits": {"train": 8, "val": 0, "test": 2},
    }
    paths = {split: str(out / f"{split}.h5") for split in ("train", "val", "test")}
    simulate_measurements(str(out / "psf.h5"), dataset, "m", paths, seed=0)
    return out


def test_dataset_stages_pair_the_leading_images_and_pseudo_pair_the_rest(
    base_dir, metalens_splits, tmp_path
):
    from thincam.data.h5io import json_attr, read_h5
    from thincam.stages.dmdiff import pseudo_pairs, train_dmdiff

    from thincam.metrics.fidelity import psnr
    from thincam.stages.dmdiff import pseudo_quality

    data, psf = metalens_splits / "train.h5", metalens_splits / "psf.h5"
    train_dmdiff(data, psf, base_dir, tmp_path / "stage1", TRAIN, seed=0, n_unpaired=3)
    training = json.loads((tmp_path / "stage1/training.json").read_text())
    assert training["n_real"] == 5 and training["n_pseudo"] == 0
    assert training["pseudo_pairs"] == {"asked": False, "used": False}
    split, _ = read_h5(data, contract="dataset")
    # The gate both ways, on the same pseudo captures: a margin they clear, one they cannot.
    for margin, used in ((-100.0, True), (100.0, False)):
        out = tmp_path / f"p{margin:g}.h5"
        pseudo_pairs(tmp_path / "stage1", base_dir, data, psf, out, 3, min_gain_db=margin)
        pairs, attrs = read_h5(out, contract="pseudo_pairs")
        assert np.array_equal(pairs["x_clean"], split["x"][5:])
        assert np.array_equal(pairs["index"], split["index"][5:])
        assert json_attr(attrs, "fwhm_grid") == read_h5(psf, ["fwhm"])[0]["fwhm"].astype(float).tolist()
        quality = json_attr(attrs, "quality")  # against the true captures the training never reads
        assert quality["pseudo_psnr_db"] == pytest.approx(psnr(pairs["y_pseudo"], split["y"][5:]).mean(), abs=1e-4)
        assert quality["clean_psnr_db"] == pytest.approx(psnr(split["x"][5:], split["y"][5:]).mean(), abs=1e-4)
        assert quality["good_enough"] is used and quality["min_gain_db"] == margin
        train_dmdiff(data, psf, base_dir, tmp_path / f"full{used}", TRAIN, 0, n_unpaired=3, pseudo_pairs=out)
        training = json.loads((tmp_path / f"full{used}/training.json").read_text())
        assert training["n_real"] == 5 and training["n_pseudo"] == (3 if used else 0)
        assert training["pseudo_pairs"] == {"asked": True, "used": used, **quality}

    rng = np.random.default_rng(0)
    truth = rng.uniform(0.2, 0.8, (2, 3, 8, 8))
    close, far = truth + 0.01 * rng.standard_normal(truth.shape), truth + 0.1 * rng.standard_normal(truth.shape)
    quality = pseudo_quality(close, far, truth, min_gain_db=15.0)  # ~40 dB vs ~20 dB
    assert quality["good_enough"] and 19 < quality["pseudo_psnr_db"] - quality["clean_psnr_db"] < 21
    assert not pseudo_quality(close, far, truth, min_gain_db=25.0)["good_enough"]

    with pytest.raises(BadInputError, match="unpaired must be in"):
        train_dmdiff(data, psf, base_dir, tmp_path / "x", TRAIN, 0, n_unpaired=8)
    with pytest.raises(BadInputError, match="nothing to pseudo-pair"):
        pseudo_pairs(tmp_path / "stage1", base_dir, data, psf, tmp_path / "q.h5", 0, min_gain_db=1.0)
    with pytest.raises(BadInputError, match="train split"):
        train_dmdiff(metalens_splits / "test.h5", psf, base_dir, tmp_path / "x", TRAIN, 0, 0)
    assert not (tmp_path / "x").exists() and not (tmp_path / "q.h5").exists()


def test_dmdiff_method_is_the_tunable_decoder_of_the_trained_model(
    base_dir, metalens_splits, tmp_path
):
    from thincam.data.h5io import json_attr, read_h5
    from thincam.stages.dmdiff import read_fwhm
    from thincam.stages.dmdiff import train_dmdiff as train_on_dataset
    from thincam.stages.reconstruct import reconstruct

    data, psf = metalens_splits / "train.h5", metalens_splits / "psf.h5"
    model_dir = tmp_path / "model"
    train_on_dataset(data, psf, base_dir, model_dir, TRAIN, seed=0, n_unpaired=0)
    # The model folder moves with its base: the method loads the base it is given.
    moved = tmp_path / "moved_base"
    shutil.copytree(base_dir, moved)
    models = {"dmdiff": str(model_dir), "dmdiff_base": str(moved)}
    timing = {"warmup": 0, "repeats": 1, "n_images": 1}
    run = dict(dataset="m", method="dmdiff", timing=timing)
    variants = {"a05": {"model": "full", "alpha": 0.5}, "a1": {"model": "full"}}
    reconstruct(
        metalens_splits / "test.h5", psf, tmp_path / "dmdiff", variants=variants,
        models={v: models for v in variants}, **run,
    )
    test, _ = read_h5(metalens_splits / "test.h5", contract="dataset")
    model = load_dmdiff(model_dir, base_dir=moved)
    for variant, alpha in (("a05", 0.5), ("a1", 1.0)):
        recon, attrs = read_h5(tmp_path / "dmdiff" / f"{variant}.h5", contract="recon")
        assert np.array_equal(recon["xhat"], restore(model, test["y"], read_fwhm(psf), alpha).numpy())
        assert json_attr(attrs, "params") == variants[variant] and attrs["variant"] == variant
        assert recon["latency_s"][0] > 0
    bad = {"a05": variants["a05"], "bad": {"model": "full", "beta": 1.0}}
    with pytest.raises(BadInputError, match="does not take parameter"):
        reconstruct(
            metalens_splits / "test.h5", psf, tmp_path / "bad", variants=bad,
            models={v: models for v in bad}, **run,
        )
    assert not (tmp_path / "bad").exists()  # no folder when a variant fails: nothing half done


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["vae", "unet"])
def test_base_pretraining_resumes_after_kill_in_either_phase(tmp_path, phase):
    """Killed in the UNet phase, the re-run loads the finished VAE from its last checkpoint."""
    from resume_helpers import killed_and_resumed, same_files

    np.save(tmp_path / "x.npy", _images(8))
    checkpoint = tmp_path / "checkpoint"
    cfg = {**MICRO, "vae_steps": 12, "unet_steps": 12, "checkpoint_every": 4}
    code = f"""
import numpy as np
from thincam.models.dmdiff.pretrain import pretrain_dmdiff_base
pretrain_dmdiff_base(np.load(r"{tmp_path / 'x.npy'}"), r"OUT", {cfg!r}, seed=0, checkpoint_dir=r"{checkpoint}")
"""
    killed_and_resumed(code, tmp_path / "whole", tmp_path / "cut", checkpoint / phase)
    assert not checkpoint.exists() or not any(checkpoint.iterdir())
    same_files(tmp_path / "whole", tmp_path / "cut")
    same_files(tmp_path / "whole", tmp_path / "cut", "loss.csv")


@pytest.mark.slow
def test_dmdiff_training_resumes_after_kill_bit_identical(base_dir, tmp_path):
    from resume_helpers import killed_and_resumed, same_files

    x = _images(6, seed=5)
    np.savez(tmp_path / "pairs.npz", y=_captures(x), x=x)
    checkpoint = tmp_path / "checkpoint"
    cfg = {**TRAIN, "steps": 12, "checkpoint_every": 4, "ema_decay": 0.9}
    code = f"""
import numpy as np
from thincam.models.dmdiff.train import train_dmdiff
pairs = np.load(r"{tmp_path / 'pairs.npz'}")
fwhm = np.array({FWHM.tolist()!r}, dtype=np.float32)
train_dmdiff(r"{base_dir}", (pairs["y"], pairs["x"]), fwhm, r"OUT", {cfg!r}, seed=0, checkpoint_dir=r"{checkpoint}")
"""
    killed_and_resumed(code, tmp_path / "whole", tmp_path / "cut", checkpoint)
    same_files(tmp_path / "whole", tmp_path / "cut")
    same_files(tmp_path / "whole", tmp_path / "cut", "loss.csv")
