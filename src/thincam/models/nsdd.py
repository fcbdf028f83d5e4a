"""NSDD student: one pass of the diffusion prior's UNet, constrained to the null space of A.

xhat = A+y + (I - A+A) r, with r predicted from (y', A+y) by an adapter g_phi and the prior's
UNet g_theta at one fixed timestep. The range part of xhat is the anchor's by construction, so the
student can only add what the measurement cannot see (exactly so when A+ is a generalised inverse,
A A+ A = A; with Tikhonov A+ (lam > 0) up to a term of order lam). The physics is not part of the
module: it is rebuilt from the PSF, so saved weights stay independent of the camera files.

Choices (and why):
- y' = y centre-cropped or zero-padded to the scene grid (y itself when sizes agree), not
  resized: the operator puts the scene centre at the sensor centre, and keeping the pixel pitch
  keeps the PSF's scale the same for y' and A+y.
- g_phi is three 3x3 convolutions, not a second UNet: the anchor A+y already undoes the global
  multiplexing, so g_phi only needs local channel mixing; a UNet would double the UNet cost.
  Its last convolution starts at zero and its output is added to sqrt(abar) * anchor, so an
  untrained student is exactly "the prior denoises A+y at t_fixed, then null-space projection".
- r is the prior's x0 estimate at t_fixed (from its epsilon / v / sample prediction), mapped
  from the prior's [-1, 1] to [0, 1]: this keeps g_theta in the role it was trained for and gives
  r an identity path through z / sqrt(abar), instead of treating a noise prediction as an image.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config

from thincam.errors import BadInputError, CorruptFileError, MissingWeightsError
from thincam.models.adm import ADMUNet
from thincam.models.diffusion import PREDICTION_TYPES, prediction_to_x0
from thincam.physics.geometry import centred_start

MODES = ("null", "full")
# g_theta's class by prior kind: a diffusers UNet2DModel or an ADM checkpoint's DiffUNet.
PRIOR_CLASSES = {"diffusers": UNet2DModel, "adm": ADMUNet}
# The distillation output folder is complete only when this file, written last, exists.
MARKER = "training.json"  # thincam.models.training.RECORD_JSON, written last


def place_on_grid(y: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre-crop or zero-pad y to ``shape``: sensor centre pixel onto the scene centre pixel."""
    pads = []
    for n_sensor, n_scene in zip(reversed(y.shape[-2:]), reversed(tuple(shape))):
        before = centred_start(n_scene, n_sensor)
        pads += [before, n_scene - n_sensor - before]
    return F.pad(y, pads) if any(pads) else y


class NSDDStudent(ModelMixin, ConfigMixin):
    """g_phi (adapter) -> g_theta (prior UNet at t_fixed) -> r -> anchor + null_project(r)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        prior_config: dict,
        t_fixed: int,
        alpha_bar: float,
        prediction_type: str = "epsilon",
        image_channels: int = 3,
        adapter_channels: int = 32,
        mode: str = "null",
        operator_identity: dict | None = None,
        prior_kind: str = "diffusers",
    ):
        super().__init__()
        self.bf16 = False  # bfloat16 autocast of g_theta: a run-time choice, not part of the model
        if mode not in MODES:
            raise BadInputError(f"nsdd mode must be one of {MODES}, got {mode!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise BadInputError(f"prior prediction_type {prediction_type!r} not in {PREDICTION_TYPES}")
        if not 0.0 < alpha_bar <= 1.0:
            raise BadInputError(f"alpha_bar at t_fixed must be in (0, 1], got {alpha_bar}")
        c = int(adapter_channels)
        self.adapter = torch.nn.Sequential(
            torch.nn.Conv2d(2 * image_channels, c, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(c, c, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(c, image_channels, 3, padding=1),
        )
        torch.nn.init.zeros_(self.adapter[-1].weight)
        torch.nn.init.zeros_(self.adapter[-1].bias)
        if prior_kind not in PRIOR_CLASSES:
            raise BadInputError(f"nsdd prior_kind must be one of {sorted(PRIOR_CLASSES)}, got {prior_kind!r}")
        self.unet = PRIOR_CLASSES[prior_kind].from_config(dict(prior_config))

    def residual(self, y: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """r in [0, 1] image units (unclipped) from the measurement and the anchor."""
        cfg = self.config
        a = math.sqrt(cfg.alpha_bar)
        anchor_m = 2.0 * anchor - 1.0
        y_m = place_on_grid(2.0 * y - 1.0, anchor.shape[-2:])
        z = a * anchor_m + self.adapter(torch.cat([y_m, anchor_m], dim=1))
        t = torch.full((z.shape[0],), cfg.t_fixed, dtype=torch.long, device=z.device)
        with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.unet(z, t).sample.float()
        x0 = prediction_to_x0(z, out, cfg.alpha_bar, cfg.prediction_type)
        return (x0 + 1.0) / 2.0

    def forward(self, y: torch.Tensor, physics, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """xhat (unclipped); ``anchor`` = A+y when the caller already has it (target shards)."""
        if anchor is None:
            anchor = physics.A_dagger(y)
        r = self.residual(y, anchor)
        if self.config.mode == "full":
            return r
        return anchor + physics.null_project(r)


def build_student(prior_unet: UNet2DModel, scheduler, cfg: dict, operator_identity: dict | None = None) -> NSDDStudent:
    """A student whose g_theta starts as a copy of the prior's UNet (cfg: t_fixed, adapter_channels, mode).

    ``operator_identity`` (``physics.identity()``) is stored in its config: the student learned
    this camera's null space, and refuses to run with another operator.
    """
    n_train = int(scheduler.config.num_train_timesteps)
    t_fixed = int(cfg["t_fixed"])
    if not 0 <= t_fixed < n_train:
        raise BadInputError(f"nsdd t_fixed must be in [0, {n_train}), got {t_fixed}")
    student = NSDDStudent(
        prior_config={k: v for k, v in prior_unet.config.items() if not k.startswith("_")},
        t_fixed=t_fixed,
        alpha_bar=float(scheduler.alphas_cumprod[t_fixed]),
        prediction_type=scheduler.config.prediction_type,
        image_channels=int(prior_unet.config.out_channels),
        adapter_channels=int(cfg["adapter_channels"]),
        mode=cfg["mode"],
        operator_identity=operator_identity,
        prior_kind="adm" if isinstance(prior_unet, ADMUNet) else "diffusers",
    )
    student.unet.load_state_dict(prior_unet.state_dict())
    return student


def load_student(path: str | Path) -> NSDDStudent:
    """A trained student from a distill_nsdd output folder (complete only with its marker) or a model folder."""
    path = Path(path)
    if (path / "model").is_dir() or (path / MARKER).exists():
        if not (path / MARKER).exists():
            raise CorruptFileError(f"{path}: NSDD output is incomplete (no {MARKER})")
        path = path / "model"
    if not (path / NSDDStudent.config_name).exists():
        raise MissingWeightsError(f"{path}: no NSDD student here ({NSDDStudent.config_name} missing)")
    return NSDDStudent.from_pretrained(path)


def nsdd_reconstruct(student: NSDDStudent, physics, y: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Batched inference without gradients: xhat clipped to [0, 1], on y's device."""
    param = next(student.parameters())
    y = torch.as_tensor(y)
    student.eval()
    out = []
    with torch.no_grad():
        for start in range(0, y.shape[0], batch_size):
            yb = y[start : start + batch_size].to(device=param.device, dtype=param.dtype)
            out.append(student(yb, physics).clamp_(0.0, 1.0).to(y.device))
    return torch.cat(out)
