// Graft's engine worker: owns the wasm module, the device and the session.
//
// The main thread (graft.js) posts `{ id, op, args }`; every reply is `{ id, ok, value }` or
// `{ id, ok: false, error, code }`, and long operations also post `{ id, progress }`.
// Operations run one at a time in arrival order, except `cancel`, which must reach a running
// `train`.

import init, { Engine, checkImageFile } from './wasm/graft_engine.js';

/** Decoded pixels handed to the engine per call, and images per call: bound memory and pace progress. */
const CHUNK_PIXELS = 16_000_000;
const CHUNK_IMAGES = 8;
/** Bytes of a file's start that hold its size, for the engine's image gate. */
const HEADER_BYTES = 64 * 1024;
const WEIGHTS_CACHE = 'graft-weights-v1';

let engine = null;
/**
 * Each example's image file (a Blob: files stay on disk until read), by example id. Fine-tuning
 * decodes them again, a batch at a time; head training never does.
 */
const sources = new Map();
/** Set once the wasm module has panicked: every later call fails with this message. */
let crashed = null;
const wasmReady = init();

function codedError(code, message) {
  const error = new Error(message);
  error.code = code;
  return error;
}

function describe(image, index) {
  return image && typeof image.name === 'string' && image.name ? image.name : `image ${index + 1}`;
}

/** The first 16 hex digits of the SHA-256 of the file's bytes: the CLI's content hash. */
async function contentHash(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest, 0, 8), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * The image gate: refuses a file too large, of another format, or declaring too many pixels,
 * from its size and first bytes, before anything reads the rest or allocates to decode it.
 */
async function gate(blob, name) {
  checkImageFile(new Uint8Array(await blob.slice(0, HEADER_BYTES).arrayBuffer()), blob.size, name);
}

/**
 * Decodes one image file to RGBA pixels at its full size, as the CLI does: no colour
 * management, no premultiplication, EXIF orientation applied. The engine resizes and crops.
 */
async function decode(blob, name) {
  await gate(blob, name);
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
  } catch {
    throw codedError('BAD_IMAGE', `${name}: not an image the browser can decode (type '${blob.type || 'unknown'}')`);
  }
  const { width, height } = bitmap;
  if (!width || !height) {
    bitmap.close();
    throw codedError('BAD_IMAGE', `${name}: the image has no pixels`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { pixels: context.getImageData(0, 0, width, height).data, width, height };
}

/** Joins decoded images into one pixel buffer plus `[w, h, ...]`. */
function pack(decoded) {
  const pixels = new Uint8Array(decoded.reduce((sum, d) => sum + d.pixels.length, 0));
  const dims = new Uint32Array(decoded.length * 2);
  let at = 0;
  decoded.forEach((d, i) => {
    pixels.set(d.pixels, at);
    at += d.pixels.length;
    dims[2 * i] = d.width;
    dims[2 * i + 1] = d.height;
  });
  return { pixels, dims };
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
 * The pixels of one image as ImageData: a file is decoded (through the gate); pixels already
 * decoded (ImageData, ImageBitmap) are read as they are, without a round trip through PNG.
 */
async function imageDataOf(image, name) {
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) return image;
  if (image instanceof Blob) {
    const { pixels, width, height } = await decode(image, name);
    return new ImageData(pixels, width, height);
  }
  const canvas = new OffscreenCanvas(image.width, image.height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(image, 0, 0);
  return context.getImageData(0, 0, image.width, image.height);
}

/** Decodes the images the engine asks for by example id (fine-tuning). */
async function loadExamples(ids) {
  const decoded = [];
  for (const id of ids) {
    const blob = sources.get(id);
    if (!blob) {
      throw codedError('NOT_FOUND', `fine-tuning needs the images themselves, and example '${id}' was restored from its embedding only: pass its image to addEmbeddings, or add it again`);
    }
    decoded.push(await decode(blob, id));
  }
  return pack(decoded);
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
  if (!response.ok) throw codedError('BAD_FILE', `weights ${url}: HTTP ${response.status} ${response.statusText}`);
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
    throw codedError('DEVICE_UNAVAILABLE', "WebGPU is not available here (navigator.gpu gave no adapter); use backend 'cpu' or 'auto'");
  }
  return { backend: 'cpu', fallbackReason: 'this browser gives no WebGPU adapter' };
}

/**
 * Decodes and embeds images in chunks bounded by pixels, calling `embed(chunk)` with
 * `{ pixels, dims, items }` for each; per-image failures are collected, not thrown.
 */
async function embedInChunks(items, embed, progress) {
  const failed = [];
  let chunk = [];
  let chunkPixels = 0;
  const flush = async () => {
    if (!chunk.length) return;
    const { pixels, dims } = pack(chunk.map((c) => c.decoded));
    await embed({ pixels, dims, items: chunk.map((c) => c.item) });
    chunk = [];
    chunkPixels = 0;
  };
  for (let i = 0; i < items.length; i++) {
    let decoded;
    try {
      decoded = await decode(items[i].blob, items[i].name);
    } catch (error) {
      if (!error.code) throw error;
      failed.push({ item: items[i], code: error.code, reason: error.message });
    }
    // The engine's own failures are the whole call's, not this image's.
    if (decoded) {
      if (chunkPixels + decoded.width * decoded.height > CHUNK_PIXELS) await flush();
      chunk.push({ item: items[i], decoded });
      chunkPixels += decoded.width * decoded.height;
      if (chunk.length >= CHUNK_IMAGES) await flush();
    }
    progress?.({ status: 'progress', done: i + 1, total: items.length });
  }
  await flush();
  return failed;
}

const operations = {
  async create({ weights, backend }, progress) {
    await wasmReady;
    if (engine) throw codedError('ALREADY_EXISTS', 'this worker already has an engine');
    const { bytes, cache } =
      typeof weights === 'string' ? await fetchWeights(weights, progress) : { bytes: new Uint8Array(weights), cache: null };
    const choice = await pickBackend(backend);
    try {
      engine = await Engine.create(bytes, choice.backend);
    } catch (error) {
      // Only a device that failed falls back to the CPU; bad weights stay bad.
      if (backend !== 'auto' || choice.backend !== 'webgpu' || !String(error.code).startsWith('DEVICE_')) throw error;
      engine = await Engine.create(bytes, 'cpu');
      choice.fallbackReason = error.message;
    }
    // Cache only weights that loaded: a truncated download must not be kept.
    if (cache) await cache.put(weights, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
    progress({ status: 'ready' });
    return { backend: engine.backend, fallbackReason: choice.fallbackReason ?? null };
  },

  async addExamples({ label, images, ids }, progress) {
    // Pixels handed over (ImageBitmap, ImageData) become PNG Blobs: kept for fine-tuning.
    const items = [];
    const skipped = [];
    const inCall = new Map();
    for (let index = 0; index < images.length; index++) {
      const name = describe(images[index], index);
      const blob = await asBlob(images[index]);
      try {
        await gate(blob, name); // before the hash reads the whole file
      } catch (error) {
        skipped.push({ index, name, code: error.code ?? 'BAD_IMAGE', reason: error.message });
        continue;
      }
      const hash = await contentHash(blob);
      const existing = engine.duplicateOf(hash) ?? (inCall.has(hash) ? `${inCall.get(hash)} in this call` : null);
      if (existing) {
        skipped.push({ index, name, code: 'ALREADY_EXISTS', reason: `${name}: the same image as ${existing}` });
        continue;
      }
      inCall.set(hash, `'${name}'`);
      items.push({ index, name, blob, hash, id: ids?.[index] ?? crypto.randomUUID() });
    }
    // Before any image is decoded: a project too large to train takes no more.
    if (items.length) engine.checkRoom(label, items.length);
    const added = [];
    const parts = [];
    const failed = await embedInChunks(
      items,
      async ({ pixels, dims, items: chunk }) => {
        parts.push(await engine.addExamples(label, pixels, dims, chunk.map((c) => c.id), chunk.map((c) => c.hash)));
        for (const { index, id, hash, blob } of chunk) {
          added.push({ index, id, hash });
          sources.set(id, blob);
        }
      },
      progress,
    );
    skipped.push(...failed.map(({ item, code, reason }) => ({ index: item.index, name: item.name, code, reason })));
    skipped.sort((a, b) => a.index - b.index);
    if (added.length === 0) {
      if (!images.length) throw codedError('INVALID_OPTION', 'no images were given');
      const error = codedError(skipped[0].code, `no image could be added: ${skipped.map((s) => s.reason).join('; ')}`);
      error.skipped = skipped;
      throw error;
    }
    return { added, skipped, embeddings: concat(parts), classes: engine.classes() };
  },

  async addEmbeddings({ label, embeddings, ids, hashes, images }) {
    const count = embeddings.length / 1280;
    if (!Array.isArray(ids) || ids.length !== count) throw codedError('INVALID_OPTION', `addEmbeddings: ${ids?.length ?? 0} ids for ${count} embeddings`);
    if (images && images.length !== count) throw codedError('INVALID_OPTION', `addEmbeddings: ${images.length} images for ${count} embeddings`);
    const blobs = images ? await Promise.all(images.map(asBlob)) : null;
    if (!hashes) {
      if (!blobs) throw codedError('INVALID_OPTION', 'addEmbeddings: give the images or their content hashes');
      hashes = await Promise.all(blobs.map(contentHash));
    }
    engine.addEmbeddings(label, embeddings, ids, hashes);
    if (blobs) ids.forEach((id, i) => sources.set(id, blobs[i]));
    return engine.classes();
  },

  removeExamples({ ids }) {
    engine.removeExamples(ids);
    ids.forEach((id) => sources.delete(id));
    return engine.classes();
  },

  removeClass({ label }) {
    engine.removeClass(label).forEach((id) => sources.delete(id));
    return engine.classes();
  },

  renameClass({ from, to }) {
    engine.renameClass(from, to);
    return engine.classes();
  },

  train({ options }, progress) {
    return engine.train(options, (event) => progress(event), loadExamples);
  },

  async predict({ images, topK }) {
    const labels = engine.labels();
    const blobs = await Promise.all(images.map(asBlob));
    const rows = [];
    const failed = await embedInChunks(
      blobs.map((blob, i) => ({ blob, name: describe(images[i], i) })),
      async ({ pixels, dims }) => rows.push(await engine.probabilities(pixels, dims)),
    );
    if (failed.length) throw codedError(failed[0].code, failed[0].reason);
    const probabilities = concat(rows);
    const classes = labels.length;
    return images.map((_, i) =>
      Array.from(probabilities.subarray(i * classes, (i + 1) * classes), (score, index) => ({ label: labels[index], score }))
        .sort((a, b) => b.score - a.score)
        .slice(0, topK),
    );
  },

  async explain({ image, label, topK, fine }) {
    const { predictions, ...explanation } = await engine.explain(await imageDataOf(image, describe(image, 0)), label ?? undefined, topK, fine);
    return { predictions: predictions.map(({ label, score }) => ({ label, score })), explanation };
  },

  async evaluate({ items }, progress) {
    const labels = engine.labels();
    const actual = items.map(({ label }, i) => {
      const index = labels.indexOf(label);
      if (index < 0) throw codedError('INVALID_OPTION', `item ${i + 1}: label '${label}' is not one of the model's classes (${labels.join(', ')})`);
      return index;
    });
    const kept = [];
    const rows = [];
    const blobs = await Promise.all(items.map((item) => asBlob(item.image)));
    const failed = await embedInChunks(
      blobs.map((blob, i) => ({ blob, name: describe(items[i].image, i), index: i })),
      async ({ pixels, dims, items: chunk }) => {
        rows.push(await engine.probabilities(pixels, dims));
        kept.push(...chunk.map((c) => actual[c.index]));
      },
      progress,
    );
    const skipped = failed.map(({ item, code, reason }) => ({ name: item.name, code, reason }));
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
      if (!run) throw codedError('INVALID_OPTION', `unknown operation '${op}'`);
      if (crashed) throw codedError('ENGINE_CRASHED', crashed);
      if (op !== 'create' && !engine) throw codedError('NO_ENGINE', 'the engine is not ready');
      const value = await run(args ?? {}, progress);
      const transfer = ArrayBuffer.isView(value) ? [value.buffer] : ArrayBuffer.isView(value?.embeddings) ? [value.embeddings.buffer] : [];
      self.postMessage({ id, ok: true, value }, transfer);
    } catch (error) {
      let message = String(error?.message ?? error);
      let code = error?.code ?? 'INTERNAL';
      if (self.graftPanic || error instanceof WebAssembly.RuntimeError) {
        // The engine hit a bug, or a trap (an allocation that failed aborts without a panic
        // message): its module is no longer usable. Say so, with the cause.
        message = `the Graft engine crashed (${self.graftPanic ?? message})`; // what to do: ENGINE_CRASHED's doc
        code = 'ENGINE_CRASHED';
        engine = null;
        crashed = message;
      }
      self.postMessage({ id, ok: false, error: message, code, skipped: error?.skipped });
    }
  });
};
