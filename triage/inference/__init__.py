"""Serving: decode an upload, judge it (:mod:`.engine`, or :mod:`.onnx_engine`), the tap flow, combining photos,
request limits and Grad-CAM. Imports core, models and the checkpoint only: never data, training,
albumentations or gradio."""
