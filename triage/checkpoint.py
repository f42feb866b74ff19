"""The one place a checkpoint is written, read and verified.

A checkpoint is ``{"state_dict": ..., "meta": ...}`` saved with :func:`torch.save`, holding plain types only so it
loads with ``weights_only=True``, and a ``<file>.sha256`` sidecar (``<hex>  <name>``). The metadata says how to
rebuild the network (architecture, input size, normalisation, head) and how to use it (temperature, thresholds,
OOD statistics). Training, the release step, the ONNX export, the engines and the test helpers all go through
here, so a file written by one is read the same way by all.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from triage.core.preprocess import CANONICAL_SIZE
from triage.models.backbones import model_for_checkpoint

log = logging.getLogger(__name__)

#: The metadata layout this code writes and reads.
FORMAT = 1


class ModelLoadError(RuntimeError):
    """The model file is missing, truncated, tampered with or not a triage checkpoint."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar(path: str | Path) -> Path:
    """The ``<path>.sha256`` file that records ``path``'s digest."""
    return Path(str(path) + ".sha256")


def write_sha256(path: str | Path) -> str:
    """Record ``path``'s sha256 in its sidecar (``<hex>  <name>``, as ``sha256sum`` writes it).

    Returns:
        the hex digest.
    """
    digest = sha256_file(path)
    sidecar(path).write_text(f"{digest}  {Path(path).name}\n")
    return digest


def verify_recorded_sha256(path: str | Path) -> None:
    """Check ``path`` against the digest recorded in its sidecar.

    Raises:
        ModelLoadError: the record is missing or the file does not match it.
    """
    path = Path(path)
    record = sidecar(path)
    if not record.is_file():
        raise ModelLoadError(f"No recorded sha256 ({record.name}) next to {path.name}; refusing to load.")
    if sha256_file(path) != record.read_text().split()[0].strip().lower():
        raise ModelLoadError(f"{path.name} does not match its recorded sha256: the file is damaged or altered.")


def check_model_file(path: str | Path, verify: bool = True, missing_hint: str = "") -> Path:
    """``path`` as a :class:`Path`, once it exists and (with ``verify``) matches its recorded sha256.

    Raises:
        ModelLoadError: missing (with ``missing_hint`` as the next step), unrecorded or altered.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} not found. {missing_hint}".strip())
    if verify:
        verify_recorded_sha256(path)
    return path


def checkpoint_meta(
    *,
    version: str,
    arch: str,
    classes: list[str],
    image_size: int,
    mean: list[float] | tuple[float, ...],
    std: list[float] | tuple[float, ...],
    temperature: float,
    refer_threshold: float,
    abstain_threshold: float,
    data_fingerprint: str,
    ood: dict,
    dropout: float,
    canonical_size: int = CANONICAL_SIZE,
    **extra,
) -> dict:
    """The metadata every checkpoint carries; ``extra`` adds optional keys (metrics, diagnoses, train config...).

    Optional keys a reader understands: ``refer_threshold_other``, ``colour_constancy``, ``diagnoses`` with
    ``diagnosis_outcomes``, ``metrics``, ``train_config``, ``val_operating_point``.
    """
    meta = {
        "format": FORMAT,
        "version": version,
        "arch": arch,
        "classes": list(classes),
        "image_size": int(image_size),
        "canonical_size": int(canonical_size),
        "mean": list(mean),
        "std": list(std),
        "temperature": float(temperature),
        "refer_threshold": float(refer_threshold),
        "abstain_threshold": float(abstain_threshold),
        "data_fingerprint": data_fingerprint,
        "ood": ood,
        "dropout": float(dropout),
    }
    meta.update(extra)
    meta.setdefault("metrics", {})
    return meta


def save_checkpoint(model: nn.Module, meta: dict, path: str | Path) -> str:
    """Save weights and metadata (plain types only) and the sha256 sidecar.

    Returns:
        the file's hex sha256.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return write_sha256(path)


def read_checkpoint(path: str | Path, verify: bool = True) -> dict:
    """The checkpoint's ``{"state_dict", "meta"}``, after checking the sidecar.

    Args:
        path: the ``.pt`` file.
        verify: check the recorded sha256 (turn off only for a file just written in the same process).

    Raises:
        ModelLoadError: with a sentence saying what is wrong.
    """
    path = check_model_file(path, verify, "Train one (see docs/MODEL.md) or pass --model.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        ckpt["meta"], ckpt["state_dict"]  # noqa: B018 - both keys must be there
    except Exception as err:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        log.error("checkpoint %s failed to load: %r", path, err)
        raise ModelLoadError(f"{path.name} is not a readable triage checkpoint ({type(err).__name__}).") from err
    return ckpt


def load_model(
    path: str | Path, verify: bool = True, classes: list[str] | tuple[str, ...] | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild the network a checkpoint describes and load its weights (strictly).

    Args:
        path: the ``.pt`` file.
        verify: check the recorded sha256.
        classes: when given, the outcome names the checkpoint must have been trained for.

    Returns:
        ``(model in eval mode, meta)``.

    Raises:
        ModelLoadError: missing, altered, unreadable, or trained for other classes.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, verify)
    meta = ckpt["meta"]
    try:
        if classes is not None and list(meta["classes"]) != list(classes):
            raise ModelLoadError(f"{path.name} was trained for classes {meta['classes']}, not {list(classes)}.")
        model = model_for_checkpoint(meta)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except ModelLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - a mismatched network is "not a usable checkpoint" too
        log.error("checkpoint %s failed to load: %r", path, err)
        raise ModelLoadError(f"{path.name} is not a readable triage checkpoint ({type(err).__name__}).") from err
    return model.eval(), meta
