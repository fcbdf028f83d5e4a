"""peft LoRA on the VAE encoder and the UNet, each layer's update modulated by SVDA's Q.

peft computes ``W x + B A x * scaling``. A forward hook on every ``lora_A`` turns its output
``A x`` into ``Q A x`` with the current sample's Q for that layer's block, so the layer computes
``W x + B Q A x`` while peft keeps its own state-dict keys, save_pretrained format and loading.
For conv LoRA, Q mixes the r channels of A's output at every pixel.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from thincam.errors import BadInputError

ADAPTER = "default"
# SD-Turbo LoRA targets (as in OSEDiff/DMDiff): attention projections and the convs.
UNET_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
    "conv", "conv1", "conv2", "conv_shortcut", "conv_in", "conv_out",
)  # fmt: skip
VAE_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0",
    "conv", "conv1", "conv2", "conv_shortcut", "conv_in", "conv_out",
)  # fmt: skip


def add_lora(module: nn.Module, rank: int, targets) -> "peft.PeftModel":  # noqa: F821
    """Inject fresh LoRA (B = 0, so the model is unchanged) into ``module`` in place."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(rank), lora_alpha=int(rank), lora_dropout=0.0, target_modules=list(targets)
    )
    return get_peft_model(module, config, adapter_name=ADAPTER)


def load_lora(
    module: nn.Module, adapter_dir, trainable: bool = False
) -> "peft.PeftModel":  # noqa: F821
    """Inject the LoRA saved by ``PeftModel.save_pretrained`` in ``adapter_dir`` into ``module``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(
        module, str(adapter_dir), adapter_name=ADAPTER, is_trainable=trainable
    )


def block_name(module_name: str) -> str:
    """The block a layer belongs to: 'down_blocks.1.attentions.0.to_q' -> 'down_blocks.1'."""
    parts = module_name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1].isdigit() else parts[0]


def lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}


class QModulation:
    """Holds the current {block: Q [B,r,r]} and applies it in every LoRA layer of ``roots``.

    ``roots`` maps a prefix (e.g. 'vae', 'unet') to a module already holding peft LoRA layers.
    With no Q set (or outside :meth:`use`) the layers are plain peft LoRA.
    """

    def __init__(self, roots: dict[str, nn.Module]):
        self.q: dict[str, torch.Tensor] | None = None
        self.blocks: dict[str, int] = {}
        for prefix, root in roots.items():
            for name, layer in lora_layers(root).items():
                block = f"{prefix}.{block_name(name)}"
                self.blocks[block] = layer.r[ADAPTER]
                layer.lora_A[ADAPTER].register_forward_hook(self._hook(block))

    def _hook(self, block: str):
        def hook(module, inputs, output):
            if self.q is None:
                return output
            q = self.q[block]
            if q.shape[0] != output.shape[0]:
                raise BadInputError(
                    f"LoRA block {block}: Q has batch {q.shape[0]}, activations {output.shape[0]}"
                )
            equation = "bij,bjhw->bihw" if isinstance(module, nn.Conv2d) else "bij,b...j->b...i"
            # Keep A's memory layout (mkldnn may give channels-last): B's kernel, and so its
            # rounding, depends on it, and Q = I must reproduce plain LoRA bit for bit.
            return torch.empty_like(output).copy_(torch.einsum(equation, q, output))

        return hook

    @contextmanager
    def use(self, q: dict[str, torch.Tensor] | None):
        previous, self.q = self.q, q
        try:
            yield
        finally:
            self.q = previous
