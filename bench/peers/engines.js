// The three engines of the peer benchmark behind one interface, for page.js and first.js:
//   const engine = await createEngine(name, options); await engine.embed(images) -> Float32Array n x 1280
// `images` are RGBA ImageData, square, at least 224 px. Graft gets them as they are (its engine
// resizes the short side to 256 and centre-crops 224: at 256 px that is an exact crop); the
// peers get the same centre 224 x 224 normalised in JS as Graft does, (x - 127) / 128, NCHW for
// ONNX Runtime and NHWC for TF.js. Everything is served by our own server: no CDN.

const SIZE = 224;
const MODULES = '/bench/peers/node_modules';
const BUILD = '/bench/peers/build';

/** The centre 224 x 224 of `image`, normalised, channel-first or channel-last, into `out` at `at`. */
function normalise(image, layout, out, at) {
  const { data, width, height } = image;
  const left = Math.floor((width - SIZE) / 2);
  const top = Math.floor((height - SIZE) / 2);
  const plane = SIZE * SIZE;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const source = ((top + y) * width + left + x) * 4;
      const pixel = y * SIZE + x;
      for (let c = 0; c < 3; c++) {
        const value = (data[source + c] - 127) / 128;
        if (layout === 'nchw') out[at + c * plane + pixel] = value;
        else out[at + pixel * 3 + c] = value;
      }
    }
  }
}

function batchOf(images, layout) {
  const size = 3 * SIZE * SIZE;
  const out = new Float32Array(images.length * size);
  images.forEach((image, i) => normalise(image, layout, out, i * size));
  return out;
}

async function createGraft({ workers = 1 }) {
  const { Graft } = await import('/pkg/graft.js');
  const graft = await Graft.create({ weights: '/weights/efficientnet_lite0.safetensors', backend: 'cpu', workers });
  return {
    embed: (images) => graft.embed(images),
    info: { workers: graft.workers },
  };
}

async function createOrt() {
  const ort = await import(`${MODULES}/onnxruntime-web/dist/ort.wasm.min.mjs`);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = `${MODULES}/onnxruntime-web/dist/`;
  const session = await ort.InferenceSession.create(`${BUILD}/efficientnet_lite0_features.onnx`, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  return {
    async embed(images) {
      const pixels = new ort.Tensor('float32', batchOf(images, 'nchw'), [images.length, 3, SIZE, SIZE]);
      const { features } = await session.run({ pixels });
      return features.data;
    },
    // Without cross-origin isolation ONNX Runtime Web cannot start threads whatever numThreads says.
    info: { numThreads: ort.env.wasm.numThreads, crossOriginIsolated: globalThis.crossOriginIsolated },
  };
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

async function createTfjs() {
  // The browser builds are UMD scripts (the ES module builds import Node's fs and path).
  await loadScript(`${MODULES}/@tensorflow/tfjs-core/dist/tf-core.min.js`);
  await loadScript(`${MODULES}/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js`);
  const { tf } = globalThis;
  tf.wasm.setWasmPaths(`${MODULES}/@tensorflow/tfjs-backend-wasm/dist/`);
  await tf.setBackend('wasm');
  const { loadTfjsModel } = await import('/bench/peers/tfjs-model.js');
  const model = await loadTfjsModel(tf, `${BUILD}/tfjs-folded.json`, `${BUILD}/tfjs-folded.bin`);
  return {
    embed: (images) => model.embed(batchOf(images, 'nhwc'), images.length),
    info: {
      simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
      multithread: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
      threads: tf.wasm.getThreadsCount(),
    },
  };
}

/** `name`: 'graft', 'ort' or 'tfjs'; `options.workers` is Graft's. */
export function createEngine(name, options = {}) {
  const create = { graft: createGraft, ort: createOrt, tfjs: createTfjs }[name];
  if (!create) throw new Error(`unknown engine ${name}`);
  return create(options);
}
