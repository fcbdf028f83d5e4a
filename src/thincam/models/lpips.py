"""The one LPIPS(alex) loader, for the metric and for the training losses alike."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from thincam.errors import MissingWeightsError

# Under a weights folder laid out like $TORCH_HOME: the torchvision AlexNet trunk LPIPS uses.
ALEXNET_FILE = "hub/checkpoints/alexnet-owt-7be5be79.pth"


def load_lpips_alex(weights_dir: str | os.PathLike, device: str = "cpu"):
    """LPIPS(alex) with its trunk read from ``weights_dir``/ALEXNET_FILE, frozen, in eval mode.

    Loading the trunk ourselves, instead of letting torchvision download it, keeps the run offline
    and fails at once, naming the file, when the weights are not there. The linear heads ship
    inside the lpips package.
    """
    import lpips
    import torch

    path = Path(weights_dir) / ALEXNET_FILE
    if not path.is_file():
        raise MissingWeightsError(f"LPIPS trunk weights not found: {path}")
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        metric = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    trunk = {}
    for name, slice_ in metric.net.named_children():
        for idx, _ in slice_.named_children():
            for param in ("weight", "bias"):
                key = f"features.{idx}.{param}"
                if key in state:
                    trunk[f"{name}.{idx}.{param}"] = state[key]
    metric.net.load_state_dict(trunk, strict=True)
    metric.requires_grad_(False)
    return metric.eval().to(device)
