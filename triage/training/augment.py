"""Training augmentation for phone close-ups (training only; serving never imports this).

Aims at what clients really send, not what atlases hold: tight crops of a
single spot (5-30% of the frame), low-resolution close-ups, colour casts and
white-balance errors, blur, shake, JPEG artefacts and sensor noise.
"""

from __future__ import annotations

import albumentations as A
import cv2


def train_transform(size: int, seed: int, tight_crop_p: float = 0.35) -> A.Compose:
    """Build the seeded training pipeline that maps a canonical square to ``size`` x ``size``.

    Args:
        size: model input side.
        seed: albumentations' own seed (global seeds do not reach it).
        tight_crop_p: share of samples zoomed into 5-30% of the frame.
    """
    crop = A.OneOf(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.05, 0.30), ratio=(0.75, 1.33), p=tight_crop_p),
            A.RandomResizedCrop(size=(size, size), scale=(0.35, 1.0), ratio=(0.75, 1.33), p=1 - tight_crop_p),
        ],
        p=1.0,
    )
    return A.Compose(
        [
            crop,
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(rotate=(-20, 20), scale=(0.9, 1.1), border_mode=cv2.BORDER_REFLECT_101, p=0.4),
            A.OneOf(
                [
                    A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03),
                    A.RGBShift(r_shift_limit=18, g_shift_limit=12, b_shift_limit=18),
                    A.PlanckianJitter(),
                    A.RandomGamma(gamma_limit=(70, 140)),
                ],
                p=0.7,
            ),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))],
                p=0.25,
            ),
            A.Downscale(scale_range=(0.25, 0.6), p=0.2),
            A.ImageCompression(quality_range=(35, 90), p=0.3),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        ],
        seed=seed,
    )
