"""The DMDiff model: frozen base + SVDA-modulated LoRA, one step at t=999 along a prompt path.

A path is a prompt: ``positive`` (capture -> clean), ``neutral`` (capture -> low-pass clean),
``negative`` (clean -> capture). The encoder and the UNet carry LoRA; the decoder, the text
encoder and every base weight stay frozen. A saved model is the two peft adapter folders, the SVDA
weights and one JSON config naming the base folder: :func:`load_dmdiff` needs no training code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from thincam.errors import BadInputError, MissingWeightsError
from thincam.models.dmdiff.architecture import (
    BaseComponents,
    load_dmdiff_base,
    one_step_x0,
    prompt_embeddings,
)
from thincam.models.dmdiff.lora import UNET_TARGETS, VAE_TARGETS, QModulation, add_lora, load_lora
from thincam.models.dmdiff.svda import (
    SVDAModule,
    degradation_map,
    load_svda,
    quality_by_name,
    save_svda,
)
from thincam.models.dmdiff.tokenizer import check_tokenizer

PATHS = ("positive", "neutral", "negative")
CONFIG_FILE = "dmdiff_config.json"
VAE_LORA_DIR, UNET_LORA_DIR = "vae_encoder_lora", "unet_lora"
MODEL_KEYS = (
    "base_dir",
    "rank_vae",
    "rank_unet",
    "svda",
    "use_fwhm",
    "map_size",
    "svda_hidden",
    "prompts",
    "score",
    "musiq_weights_dir",
)


class DMDiff:
    """Base components with LoRA injected, the Q modulation hooks and (optionally) SVDA.

    ``adapters_dir`` None: fresh LoRA (B = 0) and a fresh SVDA (Q = I), i.e. exactly the base
    model. Otherwise the adapters and SVDA saved there.
    """

    def __init__(
        self, base: BaseComponents, config: dict, adapters_dir: str | os.PathLike | None = None
    ):
        missing = [key for key in MODEL_KEYS if key not in config]
        if missing:
            raise BadInputError(f"DMDiff model config lacks {missing}")
        self.base, self.config = base, {key: config[key] for key in MODEL_KEYS}
        self.timestep = base.scheduler.config.num_train_timesteps - 1
        self.bf16 = False  # bfloat16 autocast of the UNet: a run-time choice (config key bf16)
        prompts = config["prompts"]
        if set(PATHS) - set(prompts):
            raise BadInputError(f"DMDiff prompts need {PATHS}, got {sorted(prompts)}")
        check_tokenizer(base.tokenizer, [prompts[p] for p in PATHS], where="DMDiff prompts")
        if adapters_dir is None:
            self.vae_lora = add_lora(base.vae.encoder, config["rank_vae"], VAE_TARGETS)
            self.unet_lora = add_lora(base.unet, config["rank_unet"], UNET_TARGETS)
        else:
            adapters_dir = Path(adapters_dir)
            for name in (VAE_LORA_DIR, UNET_LORA_DIR):
                if not (adapters_dir / name / "adapter_config.json").is_file():
                    raise MissingWeightsError(f"DMDiff LoRA adapter missing: {adapters_dir / name}")
            self.vae_lora = load_lora(base.vae.encoder, adapters_dir / VAE_LORA_DIR)
            self.unet_lora = load_lora(base.unet, adapters_dir / UNET_LORA_DIR)
        # get_peft_model leaves modules in train mode, PeftModel.from_pretrained in eval mode.
        # Nothing here has dropout or running statistics, so eval mode everywhere keeps training,
        # a freshly built and a loaded model on the same code paths.
        for module in (base.vae, base.unet, base.text_encoder):
            module.eval()
        self.modulation = QModulation({"vae": base.vae.encoder, "unet": base.unet})
        self.svda = None
        if config["svda"]:
            self.svda = (
                load_svda(adapters_dir)
                if adapters_dir is not None
                else SVDAModule(
                    self.modulation.blocks,
                    config["map_size"],
                    config["use_fwhm"],
                    config["svda_hidden"],
                )
            )
            if self.svda.blocks != self.modulation.blocks:
                raise BadInputError("SVDA blocks do not match the LoRA layers of this base model")
            self.svda.to(self.device)
        self.quality = quality_by_name(config["score"], config["musiq_weights_dir"])
        self.embeds = prompt_embeddings(base, [prompts[p] for p in PATHS])

    @property
    def device(self) -> torch.device:
        return next(self.base.unet.parameters()).device

    def to(self, device) -> "DMDiff":
        self.base.to(device)
        if self.svda is not None:
            self.svda.to(device)
        self.embeds = self.embeds.to(device)
        return self

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """LoRA A/B of the encoder and UNet, and the SVDA net: nothing of the base."""
        params = [
            p
            for m in (self.base.vae.encoder, self.base.unet)
            for n, p in m.named_parameters()
            if "lora_" in n
        ]
        if self.svda is not None:
            params += list(self.svda.parameters())
        return params

    def check_input(self, images: torch.Tensor) -> None:
        factor = self.base.downsampling
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or images.shape[-1] % factor
            or images.shape[-2] % factor
        ):
            raise BadInputError(
                f"DMDiff input must be [B,3,H,W], H and W multiples of {factor}; "
                f"got {tuple(images.shape)}"
            )

    def degradation(self, images: torch.Tensor, fwhm_grid) -> torch.Tensor:
        return degradation_map(fwhm_grid, images, self.config["map_size"], self.quality)

    def q(self, dmap: torch.Tensor) -> dict[str, torch.Tensor] | None:
        return None if self.svda is None else self.svda(dmap)

    def encode(self, images: torch.Tensor, q) -> torch.Tensor:
        vae = self.base.vae
        with self.modulation.use(q):
            return vae.encode(2 * images - 1).latent_dist.mode() * vae.config.scaling_factor

    def denoise(self, z: torch.Tensor, path: str, q) -> torch.Tensor:
        """The one-step clean latent from ``z`` under ``path``'s prompt, at t = T - 1."""
        cond = self.embeds[PATHS.index(path)].expand(z.shape[0], -1, -1)
        with self.modulation.use(q), torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.base.unet(z, self.timestep, encoder_hidden_states=cond).sample.float()
        return one_step_x0(self.base.scheduler, z, out, self.timestep)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Image in [0,1] scale, not clamped (training needs the gradient everywhere)."""
        vae = self.base.vae
        return (vae.decode(z0 / vae.config.scaling_factor).sample + 1) / 2

    def translate(self, images: torch.Tensor, dmap: torch.Tensor, path: str) -> torch.Tensor:
        """One path end to end: D(z0(E(images), prompt)), unclamped."""
        self.check_input(images)
        q = self.q(dmap)
        return self.decode(self.denoise(self.encode(images, q), path, q))

    def save(self, out_dir: str | os.PathLike, extra: dict | None = None) -> None:
        """peft adapters (adapter_config.json + adapter_model.safetensors), SVDA, config JSON."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for lora, name in ((self.vae_lora, VAE_LORA_DIR), (self.unet_lora, UNET_LORA_DIR)):
            lora.save_pretrained(out_dir / name)
            _sort_target_modules(out_dir / name / "adapter_config.json")
        if self.svda is not None:
            save_svda(self.svda, out_dir)
        config = {**self.config, "timestep": self.timestep, **(extra or {})}
        (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))


def _sort_target_modules(config_path: Path) -> None:
    """peft writes ``target_modules`` from a Python set, so its order follows PYTHONHASHSEED;
    sorted, the same training gives the same bytes in every process."""
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def load_dmdiff(
    model_dir: str | os.PathLike, device: str = "cpu", base_dir: str | os.PathLike | None = None
) -> DMDiff:
    """A trained DMDiff from ``model_dir``, on ``base_dir`` or the base it was trained on."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise MissingWeightsError(f"DMDiff model not found: {model_dir / CONFIG_FILE} is missing")
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    base = load_dmdiff_base(base_dir if base_dir is not None else config["base_dir"], device)
    return DMDiff(base, config, adapters_dir=model_dir).to(device)
