"""The one LPIPS loader (AlexNet or VGG trunk), for the metrics and for the training losses alike.

Published lensless tables differ in the trunk: LenslessPiCam's benchmark and DMDiff report
LPIPS(vgg), FlatNet LPIPS(alex) (see ``thincam.metrics.perceptual``). Both are v0.1, whose linear
heads ship inside the lpips package; only the torchvision trunk is read from ``weights_dir``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from thincam.errors import MissingWeightsError

# Under a weights folder laid out like $TORCH_HOME: the torchvision trunk each LPIPS net uses.
ALEXNET_FILE = "hub/checkpoints/alexnet-owt-7be5be79.pth"
VGG16_FILE = "hub/checkpoints/vgg16-397923af.pth"
TRUNK_FILES = {"alex": ALEXNET_FILE, "vgg": VGG16_FILE}


def load_lpips(weights_dir: str | os.PathLike, net: str = "alex", device: str = "cpu"):
    """LPIPS(``net``) with its trunk read from ``weights_dir``/TRUNK_FILES[net], frozen, in eval mode.

    Loading the trunk ourselves, instead of letting torchvision download it, keeps the run offline
    and fails at once, naming the file, when the weights are not there.
    """
    import lpips
    import torch

    path = Path(weights_dir) / TRUNK_FILES[net]
    if not path.is_file():
        raise MissingWeightsError(f"LPIPS({net}) trunk weights not found: {path}")
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        metric = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # lpips splits torchvision's `features` into slices that keep its layer indices.
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
