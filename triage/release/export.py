"""Export a checkpoint to ONNX: ``python -m triage export --format onnx --checkpoint M --out F``.

What the graph computes, for a batch of model inputs (``image``: float32
``(N, 3, S, S)``, normalised as :meth:`triage.inference.engine.Triage.input_tensor`
makes it, any ``N``):

* ``probabilities`` ``(N, 4)``: the *calibrated* probabilities, softmax(logits / T)
  with the checkpoint's temperature folded in. They are what the decision
  thresholds were chosen on, so a consumer cannot forget the temperature or
  apply it twice; raw logits would leave that to every consumer.
* ``ood_score`` ``(N,)``: the out-of-distribution score (Mahalanobis distance of the
  pooled features to the nearest outcome), when the checkpoint has OOD state.
  It is the other half of the serving gate and needs the features anyway.
* ``features`` ``(N, D)``: the pooled features themselves, for research (embeddings,
  re-fitting the OOD state) without a second model.

Everything else the engine needs (thresholds, input size, normalisation,
version, the OOD flag threshold) goes into the ONNX metadata as JSON under
``triage_meta``; the photo decoding, quality checks and decision stay in
Python (:mod:`triage.inference.onnx_engine`). Like a ``.pt``, the file gets a ``.sha256``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from triage.checkpoint import sha256_file, write_sha256
from triage.inference.engine import Triage
from triage.models.backbones import classify_features, features

log = logging.getLogger(__name__)

#: Input and output names of the exported graph (the serving side looks them up by name).
INPUT = "image"
PROBABILITIES, OOD_SCORE, FEATURES = "probabilities", "ood_score", "features"
#: Metadata key of the engine's settings in the ONNX file.
META_KEY = "triage_meta"
#: Default ONNX opset.
OPSET = 18


class ExportedModel(nn.Module):
    """The model side of serving as one graph: calibrated probabilities, OOD score and features."""

    def __init__(self, model: nn.Module, temperature: float, ood: dict | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("inv_temperature", torch.tensor(1.0 / float(temperature), dtype=torch.float32))
        self.has_ood = bool(ood and "means" in ood)
        if self.has_ood:
            self.register_buffer("ood_means", torch.as_tensor(ood["means"], dtype=torch.float32))
            self.register_buffer("ood_precision", torch.as_tensor(ood["precision"], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs in the order of :func:`output_names`."""
        f = features(self.model, x)
        probs = torch.softmax(classify_features(self.model, f) * self.inv_temperature, dim=1)
        if not self.has_ood:
            return probs, f
        # triage.models.ood.ood_scores written with matmuls instead of einsum (same numbers, simpler graph).
        diff = f[:, None, :] - self.ood_means[None]  # (n, k, d)
        d2 = ((diff @ self.ood_precision) * diff).sum(-1)
        return probs, d2.clamp_min(0).sqrt().amin(1), f

    def output_names(self) -> list[str]:
        """Names of the graph outputs."""
        return [PROBABILITIES, OOD_SCORE, FEATURES] if self.has_ood else [PROBABILITIES, FEATURES]


def serving_meta(meta: dict) -> dict:
    """The checkpoint metadata as plain JSON data: the OOD tensors (now inside the graph) become their threshold."""
    out = {k: v for k, v in meta.items() if k != "ood"}
    ood = meta.get("ood") or {}
    out["ood"] = {k: float(ood[k]) for k in ("threshold", "quantile") if k in ood}
    return json.loads(json.dumps(out, default=float))


def export_onnx(
    checkpoint: str | Path, out: str | Path, opset: int = OPSET, verify: bool = True, check: bool = True
) -> dict:
    """Export ``checkpoint`` to an ONNX file with a dynamic batch axis, its metadata and a ``.sha256``.

    Args:
        checkpoint: a triage ``.pt``.
        out: the ``.onnx`` file to write (one file, weights inside).
        opset: ONNX opset version.
        verify: check the checkpoint's recorded sha256 first, as serving does.
        check: compare with PyTorch on a few generated photos (needs onnxruntime; skipped without it).

    Returns:
        a summary: output path, sha256, outputs, size in MB and, when checked, ``max_abs_diff``.
    """
    import onnx

    triage = Triage.load(checkpoint, verify=verify, threads=None)
    wrapper = ExportedModel(triage.model, triage.temperature, triage.meta.get("ood")).eval()
    size = int(triage.meta["image_size"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # An example batch of 2: torch.export would specialise a batch of 1 to a constant.
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation / tracing chatter, not ours to act on
        torch.onnx.export(
            wrapper,
            (example,),
            str(out),
            input_names=[INPUT],
            output_names=wrapper.output_names(),
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            external_data=False,  # one self-contained file, so one sha256 covers it
            verbose=False,
        )
    proto = onnx.load(str(out))
    meta = serving_meta(triage.meta)
    meta["source_checkpoint_sha256"] = sha256_file(Path(checkpoint))
    meta["onnx_outputs"] = wrapper.output_names()
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(meta)})
    proto.producer_name = "skin-triage"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    digest = write_sha256(out)
    summary = {
        "out": str(out),
        "sha256": digest,
        "outputs": wrapper.output_names(),
        "opset": opset,
        "size_mb": round(out.stat().st_size / 2**20, 2),
    }
    if check:
        try:
            summary["max_abs_diff"] = parity(triage, out)
        except ImportError:
            log.warning("onnxruntime is not installed: skipped the PyTorch / ONNX Runtime comparison")
    return summary


def parity_inputs(triage: Triage, n: int = 6, seed: int = 0) -> torch.Tensor:
    """A batch of ``n`` model inputs from generated skin-like photos, made the way serving makes them."""
    from triage.testing.synthetic import cast_and_grain, synthetic_photo

    rng = np.random.default_rng(seed)
    photos = [cast_and_grain(synthetic_photo(rng), seed + i) for i in range(n)]
    return torch.cat([triage.input_tensor(p) for p in photos])


def parity(triage: Triage, onnx_path: str | Path, x: torch.Tensor | None = None) -> dict:
    """Largest absolute differences between PyTorch (the engine) and ONNX Runtime on the same inputs.

    Returns:
        ``{"probabilities": ..., "ood_score": ...}`` (the latter only when both have OOD scores).
    """
    from triage.inference.onnx_engine import OnnxTriage

    x = parity_inputs(triage) if x is None else x
    ref_p, ref_s = triage.model_outputs(x)
    got_p, got_s = OnnxTriage.load(onnx_path, verify=False, threads=None).model_outputs(x)
    diff = {PROBABILITIES: float(np.abs(ref_p - got_p).max())}
    if not np.isnan(ref_s).all() and not np.isnan(got_s).all():
        # Relative: distances are in the hundreds, so float32 rounding shows in absolute terms.
        diff[OOD_SCORE] = float(np.abs(ref_s - got_s).max())
        diff["ood_score_relative"] = float((np.abs(ref_s - got_s) / np.maximum(np.abs(ref_s), 1e-6)).max())
    return diff
