// EfficientNet-Lite0's embedding in TF.js ops, from the folded weights that build_models.py
// writes (tfjs-folded.json + tfjs-folded.bin): the graph of src/model/efficientnet_lite.rs with
// every BatchNorm already in the convolution's weights and bias.
//
// Each convolution is one fused op (convolution + bias + ReLU6), as the TF.js converter would
// emit and the wasm backend runs in one kernel: measured here 1.15x the speed of separate
// conv2d, add and relu6 ops, so the peer runs at its best. The padding is explicit, the numbers
// of the ONNX graph (TF "SAME": the odd pixel of a stride-2 convolution goes after).
//
//   const model = await loadTfjsModel(tf, jsonUrl, binUrl);
//   const features = await model.embed(nhwc, n);   // Float32Array n x 1280

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

export async function loadTfjsModel(tf, jsonUrl, binUrl) {
  const [description, buffer] = await Promise.all([
    fetchOk(jsonUrl).then((r) => r.json()),
    fetchOk(binUrl).then((r) => r.arrayBuffer()),
  ]);
  const tensor = ({ offset, shape }) =>
    tf.tensor(new Float32Array(buffer, offset, shape.reduce((a, b) => a * b, 1)), shape, 'float32');
  const layer = (spec) => {
    const filter = tensor(spec.filter);
    const bias = tensor(spec.bias);
    const [before, after] = spec.pad;
    const options = {
      filter,
      bias,
      strides: spec.stride,
      pad: [[0, 0], [before, after], [before, after], [0, 0]],
      activation: spec.relu6 ? 'relu6' : 'linear',
    };
    return spec.kind === 'depthwise'
      ? (x) => tf.fused.depthwiseConv2d({ x, ...options })
      : (x) => tf.fused.conv2d({ x, ...options });
  };
  const stem = layer(description.stem);
  const blocks = description.blocks.map(({ residual, layers }) => ({ residual, layers: layers.map(layer) }));
  const head = layer(description.head);
  const [height, width, channels] = description.input;

  const forward = (x) => {
    x = stem(x);
    for (const block of blocks) {
      const y = block.layers.reduce((h, run) => run(h), x);
      x = block.residual ? tf.add(y, x) : y;
    }
    return tf.mean(head(x), [1, 2]);
  };

  return {
    async embed(nhwc, n) {
      const features = tf.tidy(() => forward(tf.tensor4d(nhwc, [n, height, width, channels])));
      const values = await features.data();
      features.dispose();
      return values;
    },
  };
}
