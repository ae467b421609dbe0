"""Builds the peers' copies of Graft's backbone from Graft's own weights.

Reads weights/efficientnet_lite0.safetensors (burn's names, half precision), folds every
BatchNorm into its convolution in float32 (as Graft's CPU path does) and writes, under
bench/peers/build/:
  efficientnet_lite0_features.onnx   for onnxruntime (native and Web): pixels [N,3,224,224]
                                     (already (x-127)/128) -> features [N,1280]
  tfjs-folded.bin / tfjs-folded.json the same folded weights in TF.js filter layouts, with the
                                     layer list that bench/peers/tfjs-model.js runs
The architecture is src/model/efficientnet_lite.rs's: TF "SAME" padding (the odd pixel of a
stride-2 conv goes bottom/right), ReLU6, BN epsilon 1e-3, residual where stride 1 keeps the
channels, no squeeze-excitation.
  bench/peers/.venv/bin/python bench/peers/build_models.py [--check]
--check runs the ONNX graph on the reference photo's preprocessed input and compares it with
the reference features (computed from the original float32 weights).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WEIGHTS = REPO / "weights" / "efficientnet_lite0.safetensors"
BUILD = HERE / "build"
REFERENCE = REPO.parent / "shared" / "reference" / "efficientnet_lite0"

INPUT_SIZE = 224
BN_EPSILON = 1e-3
# (repeats, expand ratio, kernel, stride of the first block, out channels), as in the Rust port.
STAGES = [(1, 1, 3, 1, 16), (2, 6, 3, 2, 24), (2, 6, 5, 2, 40), (3, 6, 3, 2, 80),
          (3, 6, 5, 1, 112), (4, 6, 5, 2, 192), (1, 6, 3, 1, 320)]


def same_padding(size, kernel, stride):
    """TF "SAME" padding of one axis, (before, after): the odd pixel goes after."""
    output = -(-size // stride)
    needed = max((output - 1) * stride + kernel - size, 0)
    return needed // 2, needed - needed // 2


def fold(weights, conv, bn):
    """Conv weight [out, in/groups, k, k] and bias [out] with the BatchNorm folded in (f32)."""
    w = weights[f"{conv}.weight"].astype(np.float32)
    gamma, beta, mean, var = (weights[f"{bn}.{name}"].astype(np.float32)
                              for name in ("gamma", "beta", "running_mean", "running_var"))
    scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPSILON)).astype(np.float32)
    return w * scale[:, None, None, None], beta - mean * scale


def layers(weights):
    """The network as (stem, blocks, head); a layer is a dict, a block {residual, layers}."""
    size = INPUT_SIZE

    def layer(name, conv, bn, kind, stride, relu6):
        nonlocal size
        w, b = fold(weights, conv, bn)
        kernel = w.shape[2]
        pad = same_padding(size, kernel, stride)
        size = -(-size // stride)
        return dict(name=name, kind=kind, kernel=kernel, stride=stride, pad=pad,
                    inChannels=w.shape[0] if kind == "depthwise" else w.shape[1],
                    outChannels=w.shape[0], relu6=relu6, w=w, b=b)

    stem = layer("stem", "conv_stem", "bn0", "conv", 2, True)
    blocks, index, channels = [], 0, 32
    for repeats, expand, _, first_stride, out in STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            p = f"blocks.{index}"
            block = []
            if expand != 1:
                block.append(layer(f"{p}.expand", f"{p}.expand_conv", f"{p}.bn0", "conv", 1, True))
            block.append(layer(f"{p}.depthwise", f"{p}.depthwise_conv", f"{p}.bn1", "depthwise", stride, True))
            block.append(layer(f"{p}.project", f"{p}.project_conv", f"{p}.bn2", "conv", 1, False))
            blocks.append(dict(residual=stride == 1 and channels == out, layers=block))
            channels, index = out, index + 1
    head = layer("head", "conv_head", "bn1", "conv", 1, True)
    return stem, blocks, head


def build_onnx(stem, blocks, head):
    nodes, initializers = [], []
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    six = numpy_helper.from_array(np.array(6, np.float32), "six")
    initializers += [zero, six]

    def conv(layer, x):
        name = layer["name"]
        initializers.append(numpy_helper.from_array(layer["w"], f"{name}.w"))
        initializers.append(numpy_helper.from_array(layer["b"], f"{name}.b"))
        before, after = layer["pad"]
        group = layer["outChannels"] if layer["kind"] == "depthwise" else 1
        nodes.append(helper.make_node(
            "Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.conv"], name=f"{name}.conv",
            kernel_shape=[layer["kernel"]] * 2, strides=[layer["stride"]] * 2,
            pads=[before, before, after, after], group=group))
        if not layer["relu6"]:
            return f"{name}.conv"
        nodes.append(helper.make_node("Clip", [f"{name}.conv", "zero", "six"], [f"{name}.out"], name=f"{name}.relu6"))
        return f"{name}.out"

    x = conv(stem, "pixels")
    for i, block in enumerate(blocks):
        y = x
        for layer in block["layers"]:
            y = conv(layer, y)
        if block["residual"]:
            nodes.append(helper.make_node("Add", [y, x], [f"blocks.{i}.sum"], name=f"blocks.{i}.add"))
            y = f"blocks.{i}.sum"
        x = y
    x = conv(head, x)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0_features",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1280])],
        initializers)
    # Opset 17 and IR 8: what both onnxruntime 1.23 and onnxruntime-web 1.30 read.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="graft bench/peers/build_models.py")
    onnx.checker.check_model(model, full_check=True)
    return model


def build_tfjs(stem, blocks, head):
    """Flat float32 buffer in TF.js layouts plus its layer list (offsets in bytes)."""
    chunks, offset = [], 0

    def put(array):
        nonlocal offset
        array = np.ascontiguousarray(array, np.float32)
        chunks.append(array.tobytes())
        spec = dict(offset=offset, shape=list(array.shape))
        offset += array.nbytes
        return spec

    def entry(layer):
        w = layer["w"]
        # tf.conv2d filters are [kh, kw, in, out]; tf.depthwiseConv2d's [kh, kw, in, 1].
        filters = w.transpose(2, 3, 1, 0) if layer["kind"] == "conv" else w.transpose(2, 3, 0, 1)
        spec = {k: v for k, v in layer.items() if k not in ("w", "b")}
        return dict(spec, pad=list(layer["pad"]), filter=put(filters), bias=put(layer["b"]))

    description = dict(
        input=[INPUT_SIZE, INPUT_SIZE, 3], features=1280, stem=entry(stem),
        blocks=[dict(residual=b["residual"], layers=[entry(l) for l in b["layers"]]) for b in blocks],
        head=entry(head))
    return b"".join(chunks), description


def check(model_path):
    import onnxruntime as ort
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    pixels = np.load(REFERENCE / "chelsea_input_chw_tfnorm.npy").astype(np.float32)[None]
    expected = np.load(REFERENCE / "chelsea_feat1280_tfpad.npy").astype(np.float32).reshape(-1)
    got = session.run(["features"], {"pixels": pixels})[0].reshape(-1)
    cosine = float(got @ expected / np.linalg.norm(got) / np.linalg.norm(expected))
    print(f"reference photo: cosine {cosine:.7f} with the float32 reference features")
    if cosine < 0.9999:
        raise SystemExit("the ONNX graph does not reproduce the reference features")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stem, blocks, head = layers(load_file(WEIGHTS))
    BUILD.mkdir(parents=True, exist_ok=True)
    onnx_path = BUILD / "efficientnet_lite0_features.onnx"
    onnx.save(build_onnx(stem, blocks, head), onnx_path)
    data, description = build_tfjs(stem, blocks, head)
    (BUILD / "tfjs-folded.bin").write_bytes(data)
    (BUILD / "tfjs-folded.json").write_text(json.dumps(description, indent=1) + "\n")
    print(f"wrote {onnx_path.relative_to(REPO)} ({onnx_path.stat().st_size} bytes) and "
          f"tfjs-folded.bin ({len(data)} bytes)")
    if args.check:
        check(onnx_path)


if __name__ == "__main__":
    main()
