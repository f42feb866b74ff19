"""Near-duplicate detection that survives flips, rotations, re-crops, resizing and re-encoding.

Each image is reduced to a small, blurred, band-passed grayscale thumbnail
(``THUMB`` x ``THUMB``, unit norm). Copies of one photo have nearly the same
thumbnail up to one of the eight flips / 90-degree rotations, and small
rotations, mild re-crops, resizing and JPEG re-encoding barely move it. So
two images are duplicates when the best of the eight dihedral correlations
exceeds a threshold. Flips, 90-degree rotations, resizing and JPEG
re-encoding are caught reliably; small rotations (a few degrees) and mild
re-crops only partly (on real photos, a 3-degree rotation about 7 times in
100, a 4% re-crop about 13 in 100): looser thresholds chain unrelated
dermoscopic photos into giant groups. All-pairs correlations are one matrix product per
dihedral variant, done in blocks: ~20k images take well under a minute on
2 cores.

A second, finer check at ``FINE`` px keeps unrelated images with the same
coarse layout (a dark mole centred on paler skin, say) apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

THUMB = 16
FINE = 32
COARSE_THRESHOLD = 0.90
FINE_THRESHOLD = 0.94


def _normalise(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32).ravel()
    a -= a.mean()
    n = np.linalg.norm(a)
    return a / n if n > 1e-6 else a


def dihedral(a: np.ndarray) -> list[np.ndarray]:
    """The eight flips / 90-degree rotations of a square 2-D array."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out += [r, r[:, ::-1]]
    return out


def signature(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Compute the coarse and fine thumbnails of an image.

    The central square is used (what the model sees), slightly blurred so that
    re-encoding noise and small shifts matter less.

    Returns:
        ``(coarse, fine)``: unit-norm float32 vectors of length THUMB**2 and FINE**2.
    """
    gray = image.convert("L")
    w, h = gray.size
    side = min(w, h)
    sq = gray.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    sq = sq.resize((64, 64), Image.Resampling.BILINEAR, reducing_gap=2.0).filter(ImageFilter.GaussianBlur(1.0))
    return _normalise(_band_pass(sq, THUMB)), _normalise(_band_pass(sq, FINE))


def _band_pass(square: Image.Image, side: int) -> np.ndarray:
    """Thumbnail minus its own blur: keeps the photo's detail, drops vignettes and lighting gradients.

    Without this, dermoscopic photos (a dark round vignette around a central
    blob) all correlate with each other and chain into one giant group.
    """
    small = square.resize((side, side), Image.Resampling.BOX)
    low = small.filter(ImageFilter.GaussianBlur(side / 8))
    return np.asarray(small, dtype=np.float32) - np.asarray(low, dtype=np.float32)


def _variants(vectors: np.ndarray, side: int) -> np.ndarray:
    """Return array (8, N, side*side) of the dihedral variants of each vector."""
    squares = vectors.reshape(-1, side, side)
    out = np.empty((8, *vectors.shape), dtype=np.float32)
    for k in range(4):
        r = np.rot90(squares, k, axes=(1, 2))
        out[2 * k] = r.reshape(len(vectors), -1)
        out[2 * k + 1] = r[:, :, ::-1].reshape(len(vectors), -1)
    return out


def find_pairs(
    coarse: np.ndarray,
    fine: np.ndarray,
    coarse_threshold: float = COARSE_THRESHOLD,
    fine_threshold: float = FINE_THRESHOLD,
    block: int = 2048,
) -> list[tuple[int, int, float]]:
    """Find all near-duplicate pairs ``(i, j, score)`` with ``i < j``.

    Args:
        coarse: (N, THUMB**2) unit vectors from :func:`signature`.
        fine: (N, FINE**2) unit vectors from :func:`signature`.
        coarse_threshold: best dihedral coarse correlation needed to be a candidate.
        fine_threshold: fine correlation (under the same dihedral variant) needed to confirm.
    """
    n = len(coarse)
    if n < 2:
        return []
    cv = _variants(coarse, THUMB)
    fv = _variants(fine, FINE)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        q = coarse[start:stop]  # (b, d)
        best = np.full((stop - start, n), -1.0, dtype=np.float32)
        best_k = np.zeros((stop - start, n), dtype=np.int8)
        for k in range(8):
            s = q @ cv[k].T
            better = s > best
            best[better] = s[better]
            best_k[better] = k
        rows, cols = np.nonzero(best >= coarse_threshold)
        rows_g = rows + start
        keep = cols > rows_g
        for r, c, gr in zip(rows[keep], cols[keep], rows_g[keep], strict=True):
            k = best_k[r, c]
            fscore = float(fine[gr] @ fv[k][c])
            if fscore >= fine_threshold:
                pairs.append((int(gr), int(c), fscore))
    return pairs


class UnionFind:
    """Disjoint sets over ``0..n-1``, for merging duplicate links into groups."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[int]:
        """Group id (the smallest member) for each element."""
        return [self.find(i) for i in range(len(self.parent))]
