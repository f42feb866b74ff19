"""Grad-CAM heatmaps for the therapist view: where in the photo the model looked."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from triage.models.backbones import classify_features


def gradcam(model: torch.nn.Module, x: torch.Tensor, class_idx: int) -> np.ndarray:
    """Grad-CAM on the last convolutional stage of a MobileNet.

    Args:
        model: the classifier (``model.features`` then ``model.classifier``).
        x: one input, shape ``(1, 3, H, W)``.
        class_idx: the outcome whose evidence is shown.

    Returns:
        ``(h, w)`` float array in ``[0, 1]`` at the feature-map resolution.
    """
    model.eval()
    with torch.enable_grad():
        fmap = model.features(x.detach().clone().requires_grad_(False))
        fmap.retain_grad()
        pooled = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
        score = classify_features(model, pooled)[0, class_idx]
        grad = torch.autograd.grad(score, fmap)[0]
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * fmap).sum(1))[0].detach().numpy()
    return cam / cam.max() if cam.max() > 0 else cam


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend a heatmap (red = strongest evidence) over the photo's central square."""
    w, h = image.size
    side = min(w, h)
    square = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    square = square.resize((320, 320), Image.Resampling.BILINEAR)
    heat = Image.fromarray(np.uint8(cam * 255)).resize((320, 320), Image.Resampling.BICUBIC)
    hv = np.asarray(heat, dtype=np.float32) / 255.0
    colour = np.stack([hv, np.clip(1.5 * hv - 0.5, 0, 1) * 0.6, (1 - hv) * 0.5], axis=-1) * 255
    base = np.asarray(square.convert("RGB"), dtype=np.float32)
    a = alpha * hv[..., None]
    return Image.fromarray(np.uint8(base * (1 - a) + colour * a))
