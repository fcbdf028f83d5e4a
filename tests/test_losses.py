"""The weight-free perceptual loss: known answers, blur sensitivity beyond L2, gradients."""

import numpy as np
import pytest
import torch

from thincam.errors import MissingWeightsError
from thincam.models.losses import (
    WEIGHT_FREE_NAME,
    WeightFreePerceptualLoss,
    gradient_magnitude,
    multiscale_gradient_loss,
    training_term,
)


def _photos(size=32):
    from skimage.data import astronaut, chelsea
    from skimage.transform import resize

    images = [resize(photo() / 255.0, (size, size), anti_aliasing=True) for photo in (astronaut, chelsea)]
    return torch.from_numpy(np.stack([np.moveaxis(i, -1, 0) for i in images])).float()


def _blur(images, sigma):
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(images, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)


@pytest.fixture(scope="module")
def loss():
    return WeightFreePerceptualLoss()


def test_gradient_magnitude_known_answer():
    """A ramp of slope 1 along x (or y) reads 1 away from the border; a flat image 0."""
    ramp = torch.arange(8.0).repeat(1, 3, 8, 1)
    for image in (ramp, ramp.transpose(-2, -1)):
        inside = gradient_magnitude(image)[..., 1:-1, 1:-1]
        assert torch.allclose(inside, torch.ones_like(inside), atol=1e-6)
    assert float(gradient_magnitude(torch.ones(1, 3, 8, 8)).max()) < 1e-5


def test_zero_for_identical_images(loss):
    x = _photos()
    assert float(loss(x, x)) == 0.0
    assert float(multiscale_gradient_loss(x, x)) == 0.0


def test_blur_costs_more_than_its_l2_error(loss):
    """Monotone in blur strength, and at equal MSE a blurred image scores worse than one off by a
    uniform brightness offset (which keeps every edge): the term sees structure, not values."""
    x = _photos()
    values = [float(loss(_blur(x, sigma), x)) for sigma in (0.5, 1.0, 2.0)]
    assert values[0] < values[1] < values[2]
    blurred = _blur(x, 1.0)
    rmse = float(((blurred - x) ** 2).mean().sqrt())
    offset = (x + rmse).clamp(max=1.0)
    offset = x + (offset - x) * rmse / float(((offset - x) ** 2).mean().sqrt())  # exactly the same MSE
    assert float(((offset - x) ** 2).mean()) == pytest.approx(rmse**2, rel=1e-4)
    assert float(loss(blurred, x)) > 5 * float(loss(offset, x))


def test_gradients_flow_and_sharpen(loss):
    """Finite, non-zero gradients; descending the loss from a blurred start restores edge energy."""
    x = _photos()
    start = _blur(x, 1.5)
    prediction = start.clone().requires_grad_(True)
    value = loss(prediction, x)
    value.backward()
    assert torch.isfinite(prediction.grad).all() and float(prediction.grad.abs().sum()) > 0
    optimiser = torch.optim.Adam([prediction], lr=0.01)
    for _ in range(30):
        optimiser.zero_grad()
        loss(prediction, x).backward()
        optimiser.step()
    with torch.no_grad():
        assert float(loss(prediction, x)) < 0.5 * float(value)
        edges = [float(gradient_magnitude(image).mean()) for image in (start, prediction, x)]
        assert edges[0] < edges[1] and abs(edges[1] - edges[2]) < abs(edges[0] - edges[2])


def test_refuses_wrong_shapes(loss):
    with pytest.raises(ValueError, match="expected two"):
        loss(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="too small for 3 scales"):
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_training_term_prefers_lpips_then_the_weight_free_term_then_none(tmp_path):
    """LPIPS whenever its weights are configured (a missing trunk is an error, not a silent
    fallback); without them the weight-free term when weighted; L2 alone (None) otherwise."""
    x = _photos()
    assert training_term(None, 2.5, 0.0) is None and training_term(str(tmp_path), 0.0, 0.0) is None
    term = training_term(None, 2.5, 0.3)
    assert term.name == WEIGHT_FREE_NAME and term.weight == 0.3
    assert term.describe() == f"l2 + 0.3 * {WEIGHT_FREE_NAME}"
    assert float(term.fn(_blur(x, 1.0), x)) == pytest.approx(float(WeightFreePerceptualLoss()(_blur(x, 1.0), x)))
    with pytest.raises(MissingWeightsError, match="alexnet"):
        training_term(str(tmp_path), 2.5, 0.3)
