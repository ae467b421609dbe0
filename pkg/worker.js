// Graft's engine worker: owns the wasm module, the device and the session.
//
// The main thread (graft.js) posts `{ id, op, args }`; every reply is `{ id, ok, value }` or
// `{ id, ok: false, error }`, and long operations also post `{ id, progress }`. Operations run
// one at a time in arrival order, except `cancel`, which must reach a running `train`.

import init, { Engine } from './wasm/graft_engine.js';

/** Images larger than this are refused: decoding them needs hundreds of megabytes. */
const MAX_PIXELS = 50_000_000;
/** Big images are reduced in the browser to this short side; the engine does the exact resize. */
const DECODE_SHORT_SIDE = 512;
/** Images decoded and embedded per engine call (bounds memory, paces progress). */
const CHUNK = 8;
const WEIGHTS_CACHE = 'graft-weights-v1';

let engine = null;
/**
 * The images behind each class's examples, in the engine's order, as Blobs (files stay on disk
 * until read). Fine-tuning decodes them again, a batch at a time; head training never does.
 */
const sources = new Map();
/** Set once the wasm module has panicked: every later call fails with this message. */
let crashed = null;
const wasmReady = init();

function describe(image, index) {
  return image && typeof image.name === 'string' && image.name ? image.name : `image ${index + 1}`;
}

/** Decodes one image to RGBA pixels, reduced so its short side is at most 512. */
async function decode(image, name) {
  let bitmap;
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) {
    bitmap = await createImageBitmap(image);
  } else if (image instanceof Blob) {
    if (image.size === 0) throw new Error(`${name}: the file is empty`);
    try {
      bitmap = await createImageBitmap(image);
    } catch {
      throw new Error(`${name}: not an image the browser can decode (type '${image.type || 'unknown'}')`);
    }
  } else if (typeof ImageBitmap !== 'undefined' && image instanceof ImageBitmap) {
    bitmap = image;
  } else {
    throw new Error(`${name}: unsupported image type; pass a File, Blob, ImageBitmap, ImageData, <img> or <canvas>`);
  }
  const { width, height } = bitmap;
  if (!width || !height) {
    bitmap.close();
    throw new Error(`${name}: the image has no pixels`);
  }
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    throw new Error(`${name}: ${width}x${height} pixels is too large (the limit is 50 megapixels); downscale it first`);
  }
  const scale = Math.min(1, DECODE_SHORT_SIDE / Math.min(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const canvas = new OffscreenCanvas(w, h);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, 0, 0, w, h);
  bitmap.close();
  return { pixels: context.getImageData(0, 0, w, h).data, width: w, height: h };
}

/** Decodes a chunk into one pixel buffer plus `[w, h, ...]`, collecting per-image failures. */
async function decodeChunk(images, offset) {
  const decoded = [];
  const failed = [];
  for (let i = 0; i < images.length; i++) {
    const name = describe(images[i], offset + i);
    try {
      decoded.push({ index: offset + i, ...(await decode(images[i], name)) });
    } catch (error) {
      failed.push({ index: offset + i, name, reason: error.message });
    }
  }
  const total = decoded.reduce((sum, d) => sum + d.pixels.length, 0);
  const pixels = new Uint8Array(total);
  const dims = new Uint32Array(decoded.length * 2);
  let at = 0;
  decoded.forEach((d, i) => {
    pixels.set(d.pixels, at);
    at += d.pixels.length;
    dims[2 * i] = d.width;
    dims[2 * i + 1] = d.height;
  });
  return { pixels, dims, indices: decoded.map((d) => d.index), failed };
}

function keepSources(label, blobs) {
  if (!sources.has(label)) sources.set(label, []);
  sources.get(label).push(...blobs);
}

/** A Blob for any accepted image, so that only files (not decoded pixels) are kept. */
async function asBlob(image) {
  if (image instanceof Blob) return image;
  const canvas = new OffscreenCanvas(image.width, image.height);
  const context = canvas.getContext('2d');
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) context.putImageData(image, 0, 0);
  else context.drawImage(image, 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}

/**
 * Decodes the images the engine asks for during fine-tuning: `pairs` is `[class, position, ...]`
 * indexing `labels`, the engine's class order. Resolves to `{ pixels, dims }` for `Engine.train`.
 */
async function loadExamples(labels, pairs) {
  const images = [];
  for (let i = 0; i < pairs.length; i += 2) {
    const label = labels[pairs[i]];
    const blob = sources.get(label)?.[pairs[i + 1]];
    if (!blob) throw new Error(`fine-tuning needs the images themselves, and class '${label}' was restored from embeddings only: pass its images to addEmbeddings, or add them again`);
    images.push(blob);
  }
  const chunk = await decodeChunk(images, 0);
  if (chunk.failed.length) throw new Error(`fine-tuning could not read an image again: ${chunk.failed[0].reason}`);
  return { pixels: chunk.pixels, dims: chunk.dims };
}

/** Joins Float32Arrays into one. */
function concat(arrays) {
  const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const array of arrays) {
    out.set(array, at);
    at += array.length;
  }
  return out;
}

/** Reads the weights from the Cache API, or downloads them with byte progress. */
async function fetchWeights(url, progress) {
  const cache = await caches.open(WEIGHTS_CACHE).catch(() => null);
  const cached = cache ? await cache.match(url) : undefined;
  const response = cached ?? (await fetch(url));
  if (!response.ok) throw new Error(`weights ${url}: HTTP ${response.status} ${response.statusText}`);
  const total = Number(response.headers.get('content-length')) || 0;
  progress({ status: 'initiate', file: url, total, cached: Boolean(cached) });
  const reader = response.body.getReader();
  const parts = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.length;
    progress({ status: 'progress', file: url, loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, cache: cached || !cache ? null : cache };
}

async function pickBackend(requested) {
  if (requested === 'cpu') return { backend: 'cpu' };
  const adapter = self.navigator.gpu ? await self.navigator.gpu.requestAdapter().catch(() => null) : null;
  if (adapter) return { backend: 'webgpu' };
  if (requested === 'webgpu') {
    throw new Error("WebGPU is not available here (navigator.gpu gave no adapter); use backend 'cpu' or 'auto'");
  }
  return { backend: 'cpu', fallbackReason: 'this browser gives no WebGPU adapter' };
}

const operations = {
  async create({ weights, backend }, progress) {
    await wasmReady;
    if (engine) throw new Error('this worker already has an engine');
    const { bytes, cache } =
      typeof weights === 'string' ? await fetchWeights(weights, progress) : { bytes: new Uint8Array(weights), cache: null };
    const choice = await pickBackend(backend);
    try {
      engine = await Engine.create(bytes, choice.backend);
    } catch (error) {
      if (choice.backend !== 'webgpu' || backend !== 'auto' || /weights/.test(error.message)) throw error;
      engine = await Engine.create(bytes, 'cpu');
      choice.fallbackReason = error.message;
    }
    // Cache only weights that loaded: a truncated download must not be kept.
    if (cache) await cache.put(weights, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
    progress({ status: 'ready' });
    return { backend: engine.backend, fallbackReason: choice.fallbackReason ?? null };
  },

  async addExamples({ label, images }, progress) {
    // Pixels handed over (ImageBitmap, ImageData) become PNG Blobs first: kept for fine-tuning.
    const blobs = await Promise.all(images.map((image) => asBlob(image).catch(() => image)));
    images = blobs;
    const skipped = [];
    const addedIndices = [];
    const parts = [];
    for (let offset = 0; offset < images.length; offset += CHUNK) {
      const chunk = await decodeChunk(images.slice(offset, offset + CHUNK), offset);
      skipped.push(...chunk.failed.map(({ index, name, reason }) => ({ index, name, reason })));
      if (chunk.indices.length) {
        parts.push(await engine.addExamples(label, chunk.pixels, chunk.dims));
        addedIndices.push(...chunk.indices);
        keepSources(label.trim(), chunk.indices.map((i) => blobs[i]));
      }
      progress({ status: 'progress', done: Math.min(offset + CHUNK, images.length), total: images.length });
    }
    if (addedIndices.length === 0) {
      const reasons = skipped.map((s) => s.reason).join('; ');
      throw new Error(images.length ? `no image could be added: ${reasons}` : 'no images were given');
    }
    return { added: addedIndices.length, addedIndices, skipped, embeddings: concat(parts), classes: engine.classes() };
  },

  async addEmbeddings({ label, embeddings, images }) {
    const count = embeddings.length / 1280;
    if (images && images.length !== count) throw new Error(`addEmbeddings: ${images.length} images for ${count} embeddings`);
    engine.addEmbeddings(label, embeddings);
    keepSources(label.trim(), images ? await Promise.all(images.map(asBlob)) : new Array(count).fill(null));
    return engine.classes();
  },

  classes: () => engine.classes(),
  removeClass: ({ label }) => (engine.removeClass(label), sources.delete(label), engine.classes()),
  renameClass({ from, to }) {
    engine.renameClass(from, to);
    const kept = sources.get(from);
    sources.delete(from);
    if (kept) sources.set(to.trim(), kept);
    return engine.classes();
  },

  async train({ options }, progress) {
    return engine.train(
      options,
      (epoch) => progress({ status: 'epoch', epoch }),
      (step) => progress({ status: 'step', step }),
      // The class order is fixed while training runs: read it once, not once per batch.
      loadExamples.bind(null, engine.classes().map((c) => c.label)),
    );
  },

  async predict({ images, topK }) {
    const labels = engine.labels();
    const chunk = await decodeChunk(images, 0);
    if (chunk.failed.length) throw new Error(chunk.failed[0].reason);
    const probabilities = await engine.probabilities(chunk.pixels, chunk.dims);
    const classes = labels.length;
    return chunk.indices.map((_, i) =>
      Array.from(probabilities.subarray(i * classes, (i + 1) * classes), (score, index) => ({ label: labels[index], score }))
        .sort((a, b) => b.score - a.score)
        .slice(0, topK),
    );
  },

  async evaluate({ items }, progress) {
    const labels = engine.labels();
    const actual = items.map(({ label }, i) => {
      const index = labels.indexOf(label);
      if (index < 0) throw new Error(`item ${i + 1}: label '${label}' is not one of the model's classes (${labels.join(', ')})`);
      return index;
    });
    const kept = [];
    const rows = [];
    const skipped = [];
    for (let offset = 0; offset < items.length; offset += CHUNK) {
      const chunk = await decodeChunk(items.slice(offset, offset + CHUNK).map((item) => item.image), offset);
      skipped.push(...chunk.failed.map(({ name, reason }) => ({ name, reason })));
      if (chunk.indices.length) {
        rows.push(await engine.probabilities(chunk.pixels, chunk.dims));
        kept.push(...chunk.indices.map((index) => actual[index]));
      }
      progress({ status: 'progress', done: Math.min(offset + CHUNK, items.length), total: items.length });
    }
    return { ...engine.evaluation(Uint32Array.from(kept), concat(rows)), skipped };
  },

  /** Memory the engine holds in wasm (grows, never shrinks: the peak so far). */
  stats: async () => ({ wasmMemoryBytes: (await wasmReady).memory.buffer.byteLength }),

  exportModel: () => engine.exportModel(),
  loadModel: ({ bytes }) => engine.loadModel(new Uint8Array(bytes)),
};

let queue = Promise.resolve();

self.onmessage = ({ data: { id, op, args } }) => {
  if (op === 'cancel') {
    engine?.cancel();
    self.postMessage({ id, ok: true, value: null });
    return;
  }
  const progress = (value) => self.postMessage({ id, progress: value });
  queue = queue.then(async () => {
    try {
      const run = operations[op];
      if (!run) throw new Error(`unknown operation '${op}'`);
      if (crashed) throw new Error(crashed);
      if (op !== 'create' && !engine) throw new Error('the engine is not ready');
      const value = await run(args ?? {}, progress);
      const transfer = ArrayBuffer.isView(value) ? [value.buffer] : ArrayBuffer.isView(value?.embeddings) ? [value.embeddings.buffer] : [];
      self.postMessage({ id, ok: true, value }, transfer);
    } catch (error) {
      let message = String(error?.message ?? error);
      if (self.graftPanic) {
        // The engine hit a bug and its module is no longer usable: say so, with the cause.
        message = `the Graft engine crashed (${self.graftPanic}); create a new Graft instance`;
        engine = null;
        crashed = message;
      }
      self.postMessage({ id, ok: false, error: message });
    }
  });
};
