"""Photos that are not skin, for measuring the gates: scikit-image's samples and generated plain scenes.

Used by ``bench/quality_rates.py`` and ``bench/ood_rates.py``; the same set in both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SKIMAGE_NON_SKIN = (
    "coffee", "chelsea", "rocket", "coins", "camera", "hubble_deep_field", "immunohistochemistry", "logo",
    "brick", "grass", "gravel", "moon", "page", "text", "horse", "retina", "colorwheel", "clock", "cell",
    "checkerboard",
)  # fmt: skip


def generated_scenes(rng: np.random.Generator) -> dict[str, Image.Image]:
    """Plain non-skin scenes: sky, grass, walls, fabric, a dark room."""
    h, w = 300, 400

    def noisy(base: tuple[float, float, float], sd: float, shared: bool = False) -> Image.Image:
        noise = rng.normal(0, sd, (h, w, 1) if shared else (h, w, 3))
        return Image.fromarray(np.clip(np.array(base) + noise, 0, 255).astype(np.uint8))

    t = np.linspace(0, 1, h)[:, None, None]
    sky = np.array([70, 130, 220]) * (1 - t) + np.array([200, 225, 255]) * t + rng.normal(0, 3, (h, w, 3))
    return {
        "sky_gradient": Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8)),
        "grass_noise": noisy((60, 140, 50), 25),
        "grey_wall": noisy((128, 128, 128), 8, shared=True),
        "white_paper": noisy((235, 235, 235), 4, shared=True),
        "warm_white_wall": noisy((225, 215, 200), 5, shared=True),
        "wood_brown": noisy((150, 100, 60), 15, shared=True),
        "red_fabric": noisy((200, 30, 40), 15),
        "blue_jeans": noisy((50, 70, 120), 15),
        "dark_room": noisy((10, 10, 10), 4),
    }


def skimage_samples() -> dict[str, Image.Image]:
    """scikit-image's sample photos that are not skin (none when scikit-image is absent)."""
    try:
        import skimage.data as skd
    except ImportError:  # the non-skin set then shrinks to the generated scenes: not comparable with other runs
        print("warning: scikit-image is not installed (pip install scikit-image): its sample photos are left out")
        return {}
    out = {}
    for name in SKIMAGE_NON_SKIN:
        try:
            arr = getattr(skd, name)()
        except Exception:  # Some samples need a download; skip those offline.
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        image = Image.fromarray(arr)
        if image.mode in ("RGBA", "LA"):
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(image, mask=image.getchannel("A"))
            image = flat
        out[f"skimage.{name}"] = image.convert("RGB")
    out["skimage.stereo_motorcycle"] = Image.fromarray(skd.stereo_motorcycle()[0]).convert("RGB")
    return out


def non_skin_photos(seed: int = 0) -> dict[str, Image.Image]:
    """Every non-skin photo: scikit-image's samples (when installed) and the generated scenes."""
    return skimage_samples() | generated_scenes(np.random.default_rng(seed))
