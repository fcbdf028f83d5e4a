"""thincam: diffusion-prior reconstruction for thin cameras (lensless and metalens)."""

__version__ = "0.1.0"
