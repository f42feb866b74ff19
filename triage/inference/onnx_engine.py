"""The inference engine on ONNX Runtime: ``python -m triage predict --backend onnx --model F.onnx``.

Serving code, like :mod:`triage.inference.engine`: imports no training or export
module, and imports ``onnxruntime`` only when a model is loaded (it is the
optional ``onnx`` extra). Decoding, quality checks, the OOD gate and the
decision are the engine's own; only the network runs in ONNX Runtime, on a
file made by :func:`triage.release.export.export_onnx`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from triage.checkpoint import ModelLoadError, check_model_file
from triage.core.outcomes import OUTCOMES
from triage.core.quality import QualityThresholds
from triage.inference.engine import Triage

#: Keep in step with triage.release.export (not imported: serving must not pull in the exporter).
INPUT, PROBABILITIES, OOD_SCORE, META_KEY = "image", "probabilities", "ood_score", "triage_meta"


class _NoTorchNetwork(torch.nn.Module):
    """Stands where the engine keeps its PyTorch network: this engine has none."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - a guard, never meant to run
        raise RuntimeError("this engine runs the network in ONNX Runtime; use model_outputs()")


class OnnxTriage(Triage):
    """:class:`~triage.inference.engine.Triage` with the network in an ONNX Runtime session."""

    def __init__(self, session, meta: dict, quality: QualityThresholds | None = None) -> None:
        super().__init__(_NoTorchNetwork(), meta, quality)
        self.session = session
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, threads: int | None = 2) -> OnnxTriage:
        """Load an exported ``.onnx``; refuse anything missing, altered or not a triage export.

        Args:
            path: the ``.onnx`` file; its sha256 must match ``<path>.sha256``.
            verify: check the recorded sha256.
            threads: ONNX Runtime intra-op threads (``None``: its default).

        Raises:
            ModelLoadError: with a sentence saying what is wrong (including a missing onnxruntime).
        """
        path = check_model_file(path, verify, "Export one with `python -m triage export`.")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ModelLoadError(
                "ONNX Runtime is not installed: pip install 'skin-triage[onnx]' (or use --backend torch)."
            ) from err
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = json.loads(session.get_modelmeta().custom_metadata_map[META_KEY])
        except Exception as err:  # noqa: BLE001 - any failure here means "not a usable export"
            raise ModelLoadError(f"{path.name} is not a readable triage ONNX export ({type(err).__name__}).") from err
        if list(meta.get("classes", [])) != list(OUTCOMES):
            raise ModelLoadError(f"{path.name} was exported for classes {meta.get('classes')}, not {list(OUTCOMES)}.")
        return cls(session, meta)

    def model_outputs(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities (float64, like the engine's) and OOD scores for an input batch."""
        # The engine's inputs are channels-last views; ONNX Runtime wants plain contiguous NCHW memory.
        feed = {INPUT: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        got = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        probs = got[PROBABILITIES].astype(np.float64)
        scores = got[OOD_SCORE].astype(np.float64) if OOD_SCORE in got else np.full(len(probs), np.nan)
        return probs, scores
