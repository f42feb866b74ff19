"""Releasing a trained model: :mod:`.ship` (copy, verify, test manifests, model card) and :mod:`.export` (ONNX)."""
