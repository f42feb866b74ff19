"""The deterministic evaluation transform, shared by evaluation and serving.

Input is a canonical square (see :mod:`triage.core.preprocess`); output is the
model's input tensor. Training augmentation lives apart in
:mod:`triage.training.augment` and is never imported by serving.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from triage.core.preprocess import colour_constancy, to_tensor_batch


def resize_square(square: np.ndarray, size: int) -> np.ndarray:
    """Resize a canonical square (H, W, 3 uint8) to the model's input size."""
    if square.shape[0] == size and square.shape[1] == size:
        return square
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def eval_batch(squares: np.ndarray | list[np.ndarray], size: int, mean, std, colour: str = "none") -> torch.Tensor:
    """Turn canonical squares into a normalised, channels-last input batch.

    Args:
        squares: canonical squares, ``(H, W, 3)`` ``uint8`` each.
        size: the model's input side.
        mean: per-channel normalisation mean (0-1 pixels).
        std: per-channel normalisation spread.
        colour: colour constancy applied to each resized square (:func:`triage.core.preprocess.colour_constancy`),
            as training applies it to each augmented input; a checkpoint names it (:func:`colour_of`).
    """
    resized = np.stack([colour_constancy(resize_square(s, size), colour) for s in squares])
    return to_tensor_batch(resized, mean, std)


def colour_of(meta: dict) -> str:
    """The colour constancy a checkpoint's model expects (``"none"`` for checkpoints older than the option)."""
    return str(meta.get("colour_constancy", "none"))
