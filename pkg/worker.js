// Graft's engine worker: owns the wasm module, the device and the session.
//
// The main thread (graft.js) posts `{ id, op, args }`; every reply is `{ id, ok, value }` or
// `{ id, ok: false, error, code }`, and long operations also post `{ id, progress }`.
// Operations run one at a time in arrival order, except `cancel`, which must reach a running
// `train` or embedding.
//
// On the CPU backend this worker also starts a pool: more workers running this same script, each
// with its own engine (one wasm instance and backbone each; the compiled module is shared), that
// embed chunks of images for it, so that embedding uses every core.

/** Decoded pixels handed to the engine per call, and images per call: bound memory and pace progress. */
const CHUNK_PIXELS = 16_000_000;
const CHUNK_IMAGES = 8;
/** Bytes of a file's start that hold its size, for the engine's image gate. */
const HEADER_BYTES = 64 * 1024;
const WEIGHTS_CACHE = 'graft-weights-v1';
/** The two builds of the engine: with WebGPU, and the CPU backend alone (a smaller download). */
const BUILDS = { webgpu: 'graft_engine', cpu: 'graft_engine_cpu' };
/** The worker name of pool members: they get the compiled module from their engine. */
const POOL_MEMBER = 'graft-engine-pool';

let engine = null;
/**
 * Each example's image file (a Blob: files stay on disk until read), by example id. Fine-tuning
 * decodes them again, a batch at a time; head training never does.
 */
const sources = new Map();
/** Set once the wasm module has panicked: every later call fails with this message. */
let crashed = null;
/** Engines in other workers that embed for this one (CPU backend only). */
const pool = [];
/** Ids of calls whose caller aborted them: embedding stops between chunks. */
const cancelled = new Set();
/** Ids of calls queued or running: only those can be cancelled. */
const open = new Set();
/** The loaded build: its bindings (`Engine`, `checkImageFile`, `memory`) and compiled module. */
let wasm = null;

async function compileWasm(url) {
  const response = await fetch(url);
  if (!response.ok) throw codedError('BAD_FILE', `${url}: HTTP ${response.status} ${response.statusText}`);
  // Streaming compilation needs the server to say application/wasm; python's http.server may not.
  return response.headers.get('content-type')?.startsWith('application/wasm')
    ? WebAssembly.compileStreaming(response)
    : WebAssembly.compile(await response.arrayBuffer());
}

/** Loads a build of the engine (`webgpu` or `cpu`), compiling it unless given its `module`. */
async function loadWasm(build, module) {
  const [bindings, compiled] = await Promise.all([
    import(`./wasm/${BUILDS[build]}.js`),
    module ?? compileWasm(new URL(`./wasm/${BUILDS[build]}_bg.wasm`, import.meta.url)),
  ]);
  const { memory } = await bindings.default({ module_or_path: compiled });
  return { build, module: compiled, memory, Engine: bindings.Engine, checkImageFile: bindings.checkImageFile };
}

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
  wasm.checkImageFile(new Uint8Array(await blob.slice(0, HEADER_BYTES).arrayBuffer()), blob.size, name);
}

/**
 * One image's RGBA pixels at its full size. A file is decoded as the CLI does (through the
 * gate; no colour management, no premultiplication, EXIF orientation applied); pixels already
 * decoded (ImageData, ImageBitmap) are read as they are. The engine resizes and crops.
 */
async function decode(image, name) {
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) return { pixels: image.data, width: image.width, height: image.height };
  let bitmap = image;
  if (image instanceof Blob) {
    await gate(image, name);
    try {
      bitmap = await createImageBitmap(image, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
    } catch {
      throw codedError('BAD_IMAGE', `${name}: not an image the browser can decode (type '${image.type || 'unknown'}')`);
    }
  }
  const { width, height } = bitmap;
  const release = () => bitmap !== image && bitmap.close();
  if (!width || !height) {
    release();
    throw codedError('BAD_IMAGE', `${name}: the image has no pixels`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  release();
  return { pixels: context.getImageData(0, 0, width, height).data, width, height };
}

/** Items' boxes as the engine takes them: a count per item, four corners and a label per box. */
function flattenBoxes(items) {
  const boxes = items.flatMap(({ boxes }) => boxes);
  return {
    corners: Float32Array.from(boxes.flatMap(({ box }) => box)),
    counts: Uint32Array.from(items.map(({ boxes }) => boxes.length)),
    labels: boxes.map(({ label }) => label),
  };
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

/**
 * Reads the weights from the Cache API, or downloads them with byte progress. A download is
 * stored as it arrives, from a copy of its stream (storing the finished bytes held the engine's
 * start up by 20-35 ms); one the network cuts short errors the copy too, so it is not stored.
 * `forget()` removes the stored weights (downloaded now or earlier) when the engine refuses them.
 */
async function fetchWeights(url, progress) {
  // No Cache API (a page served over plain http): every visit downloads.
  const cache = self.caches ? await caches.open(WEIGHTS_CACHE).catch(() => null) : null;
  const cached = cache ? await cache.match(url) : undefined;
  const response = cached ?? (await fetch(url));
  if (!response.ok) throw codedError('BAD_FILE', `weights ${url}: HTTP ${response.status} ${response.statusText}`);
  const storing = cached || !cache ? null : cache.put(url, response.clone()).catch(() => {});
  const forget = async () => {
    await storing;
    await cache?.delete(url).catch(() => {});
  };
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
  return { bytes, forget };
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
 * Decodes and embeds images (`{ image, name }`) in chunks bounded by pixels, calling
 * `embed(chunk)` with `{ pixels, dims, items }` for each; per-image failures are collected, not
 * thrown.
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
      decoded = await decode(items[i].image, items[i].name);
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

/**
 * Pretrained embeddings of `items` (`{ image, name }`) by this worker's engine: `{ embeddings,
 * embedded, failed }`, where `embedded` lists the positions in `items` of the embeddings' rows
 * and `failed` the images that could not be decoded (`{ position, code, reason }`).
 */
async function embedHere(items) {
  const parts = [];
  const embedded = [];
  const failed = await embedInChunks(
    items.map((item, position) => ({ ...item, position })),
    async ({ pixels, dims, items: chunk }) => {
      parts.push(await engine.embed(pixels, dims));
      embedded.push(...chunk.map((c) => c.position));
    },
  );
  return { embeddings: concat(parts), embedded, failed: failed.map(({ item, code, reason }) => ({ position: item.position, code, reason })) };
}

/** Another engine, in its own worker, that embeds for this one; graft.js's protocol. */
class PoolMember {
  #worker;
  #pending = new Map();
  #nextId = 1;
  /** Why it stopped, once it has: it has left the pool and refuses calls. */
  #dead = null;

  constructor({ build, module }, weights) {
    this.#worker = new Worker(new URL(import.meta.url), { type: 'module', name: POOL_MEMBER });
    this.#worker.onmessage = ({ data: { id, ok, value, error, code, progress } }) => {
      const pending = this.#pending.get(id);
      if (!pending || progress !== undefined) return;
      this.#pending.delete(id);
      if (ok) pending.resolve(value);
      else pending.reject(codedError(code, error));
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#fail(codedError('ENGINE_CRASHED', `an embedding worker failed: ${event.message ?? 'unknown error'}`));
    };
    this.#worker.onmessageerror = () => this.#fail(codedError('ENGINE_CRASHED', 'an embedding worker sent a message that could not be read'));
    this.ready = this.call('create', { weights, backend: 'cpu', build, module });
  }

  call(op, args) {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op, args }, op === 'create' ? [args.weights] : []);
    });
  }

  /** Ends the worker and takes it out of the pool: its calls fail with `error`. */
  #fail(error) {
    if (this.#dead) return;
    this.#dead = error;
    this.#worker.terminate();
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
    const at = pool.indexOf(this);
    if (at >= 0) pool.splice(at, 1);
  }

  terminate() {
    this.#fail(codedError('DISPOSED', 'the embedding pool was stopped'));
  }
}

/**
 * What the pool will be: members still to start and the weights they load. It starts with the
 * first embedding that has work for more than one engine, so that a page that only predicts
 * never runs it (it keeps the weights' bytes until then), and a first single image is not
 * slowed by members loading.
 */
const poolPlan = { members: 0, weights: null };

function startPool() {
  for (; poolPlan.members > 0; poolPlan.members--) {
    const member = new PoolMember(wasm, poolPlan.weights.slice().buffer);
    pool.push(member);
    // One that cannot start leaves the pool; the engine embeds without it.
    member.ready.catch(() => member.terminate());
  }
  poolPlan.weights = null;
}

/** Resolves after the messages already queued for this worker have been handled. */
function nextTask() {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/**
 * Embeds `items` (`{ image, name }`) over this engine and its pool, up to CHUNK_IMAGES per task:
 * `deliver(chunkItems, { embeddings, embedded, failed })` receives the chunks in order. Stops
 * taking chunks once `isCancelled()`; resolves to the number of items not embedded then.
 */
async function embedOverPool(items, deliver, progress, isCancelled) {
  // A small call is split too, so that every engine gets a share of it.
  const engines = 1 + pool.length + poolPlan.members;
  const size = Math.min(CHUNK_IMAGES, Math.ceil(items.length / engines));
  const chunks = [];
  for (let at = 0; at < items.length; at += size) chunks.push(items.slice(at, at + size));
  const finished = new Map();
  let next = 0;
  let delivered = 0;
  let done = 0;
  let failure = null;
  const work = async (embed, here) => {
    // This worker yields before each chunk it embeds itself, so that messages come in between:
    // pixels already decoded never leave the microtasks, and a member's result (whose next
    // chunk is posted at once) or a cancel would wait for the whole call.
    while ((here && (await nextTask()), next < chunks.length && !failure && !isCancelled())) {
      const index = next++;
      try {
        finished.set(index, await embed(chunks[index]));
        for (; finished.has(delivered); delivered++) {
          deliver(chunks[delivered], finished.get(delivered));
          finished.delete(delivered);
        }
      } catch (error) {
        failure ??= error;
        return;
      }
      done += chunks[index].length;
      progress?.({ status: 'progress', done, total: items.length });
    }
  };
  const member = async (worker) => {
    try {
      await worker.ready;
    } catch {
      return; // never started: it left the pool
    }
    await work(async (chunk) => {
      // Images are copied to the member, not transferred: they stay here in case it dies.
      try {
        return await worker.call('embedChunk', { items: chunk });
      } catch (error) {
        if (error.code !== 'ENGINE_CRASHED') throw error;
        // Only that member is gone (it left the pool): this engine embeds its chunk instead.
        return embedHere(chunk);
      }
    });
  };
  if (chunks.length > 1) startPool();
  await Promise.all([...pool.map(member), work(embedHere, true)]);
  if (failure) throw failure;
  return chunks.slice(delivered).reduce((sum, chunk) => sum + chunk.length, 0);
}

/** The engine on the backend `choice` names; only a device that fails falls back to the CPU. */
async function startEngine(bytes, requested, choice) {
  try {
    return await wasm.Engine.create(bytes, choice.backend);
  } catch (error) {
    // The same build runs the CPU backend; bad weights stay bad.
    if (requested !== 'auto' || choice.backend !== 'webgpu' || !String(error.code).startsWith('DEVICE_')) throw error;
    choice.fallbackReason = error.message;
    return wasm.Engine.create(bytes, 'cpu');
  }
}

const operations = {
  async create({ weights, backend, workers = 1, build, module }, progress) {
    if (engine) throw codedError('ALREADY_EXISTS', 'this worker already has an engine');
    // The weights download while the backend is picked and its build of the engine compiles.
    const download = typeof weights === 'string' ? fetchWeights(weights, progress) : { bytes: new Uint8Array(weights), forget: () => {} };
    const loading = pickBackend(backend).then(async (choice) => ({ choice, wasm: await loadWasm(build ?? choice.backend, module) }));
    const [{ bytes, forget }, loaded] = await Promise.all([download, loading]);
    const { choice } = loaded;
    wasm = loaded.wasm;
    try {
      engine = await startEngine(bytes, backend, choice);
    } catch (error) {
      // Refused weights are not kept for the next visit (a device that failed says nothing of them).
      if (error.code === 'BAD_FILE' || error.code === 'WRONG_BACKBONE') await forget();
      throw error;
    }
    // The GPU embeds a batch at once; on the CPU, every worker takes a core.
    const poolSize = engine.backend === 'cpu' ? workers - 1 : 0;
    Object.assign(poolPlan, { members: poolSize, weights: poolSize ? bytes : null });
    progress({ status: 'ready' });
    return { backend: engine.backend, fallbackReason: choice.fallbackReason ?? null, workers: 1 + poolSize };
  },

  /** A pool member's task: embeds a chunk of images for its engine. */
  embedChunk: ({ items }) => embedHere(items),

  async embed({ images }, progress, call) {
    const items = images.map((image, index) => ({ image, name: describe(image, index) }));
    const rows = new Float32Array(items.length * 1280);
    let at = 0;
    const remaining = await embedOverPool(
      items,
      (chunk, { embeddings, failed }) => {
        if (failed.length) throw codedError(failed[0].code, failed[0].reason);
        rows.set(embeddings, at);
        at += embeddings.length;
      },
      progress,
      call.cancelled,
    );
    if (remaining) throw codedError('ABORTED', `embedding was aborted with ${remaining} of ${items.length} images left`);
    return rows;
  },

  async addExamples({ label, images, ids }, progress, call) {
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
      items.push({ index, name, image: blob, hash, id: ids?.[index] ?? crypto.randomUUID() });
    }
    // Before any image is decoded: a project too large to train takes no more.
    if (items.length) engine.checkRoom(label, items.length);
    const added = [];
    const parts = [];
    let delivered = 0;
    const remaining = await embedOverPool(
      items,
      (chunk, { embeddings, embedded, failed }) => {
        const kept = embedded.map((position) => chunk[position]);
        if (kept.length) engine.addEmbeddings(label, embeddings, kept.map((c) => c.id), kept.map((c) => c.hash));
        for (const { index, id, hash, image } of kept) {
          added.push({ index, id, hash });
          sources.set(id, image);
        }
        parts.push(embeddings);
        for (const { position, code, reason } of failed) skipped.push({ index: chunk[position].index, name: chunk[position].name, code, reason });
        delivered += chunk.length;
      },
      progress,
      call.cancelled,
    );
    if (remaining) {
      for (const { index, name } of items.slice(delivered)) skipped.push({ index, name, code: 'ABORTED', reason: `${name}: not added, the import was aborted` });
    }
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
    const rows = [];
    const failed = await embedInChunks(
      images.map((image, i) => ({ image, name: describe(image, i) })),
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
    const { pixels, width, height } = await decode(image, describe(image, 0));
    const { predictions, ...explanation } = await engine.explain(new ImageData(pixels, width, height), label ?? undefined, topK, fine);
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
    const failed = await embedInChunks(
      items.map(({ image }, i) => ({ image, name: describe(image, i), index: i })),
      async ({ pixels, dims, items: chunk }) => {
        rows.push(await engine.probabilities(pixels, dims));
        kept.push(...chunk.map((c) => actual[c.index]));
      },
      progress,
    );
    const skipped = failed.map(({ item, code, reason }) => ({ name: item.name, code, reason }));
    return { ...engine.evaluation(Uint32Array.from(kept), concat(rows)), skipped };
  },

  // Object detection: images with boxes ({ label, box: [x0, y0, x1, y1] } in image pixels),
  // decoded and handed to the engine a chunk at a time; the engine keeps them letterboxed.

  async addDetectionExamples({ items, inputSize, validation }, progress, call) {
    const added = [];
    for (let start = 0; start < items.length; start += CHUNK_IMAGES) {
      if (call.cancelled()) throw codedError('ABORTED', `adding was aborted with ${items.length - start} of ${items.length} images left`);
      const chunk = items.slice(start, start + CHUNK_IMAGES);
      const decoded = [];
      for (const [offset, { image }] of chunk.entries()) decoded.push(await decode(image, describe(image, start + offset)));
      const { pixels, dims } = pack(decoded);
      const { corners, counts, labels } = flattenBoxes(chunk);
      const ids = chunk.map(({ id }) => id ?? crypto.randomUUID());
      try {
        engine.addDetectionExamples(pixels, dims, corners, counts, labels, ids, inputSize, validation);
      } catch (error) {
        // The engine adds a chunk whole or not at all; say what earlier chunks added.
        if (added.length) error.message += ` (the ${added.length} images before this chunk of ${CHUNK_IMAGES} were added)`;
        throw error;
      }
      added.push(...ids);
      progress({ status: 'added', done: added.length, total: items.length });
    }
    return { ids: added, classes: engine.detectionClasses() };
  },

  trainDetector: ({ options }, progress) => engine.trainDetector(options, (event) => progress(event)),

  async detect({ images, minScore }) {
    const found = [];
    for (const [index, image] of images.entries()) {
      const { pixels, dims } = pack([await decode(image, describe(image, index))]);
      found.push(...(await engine.detect(pixels, dims, minScore)));
    }
    return found;
  },

  async evaluateDetector({ items }, progress) {
    const decoded = [];
    for (const [index, { image }] of items.entries()) {
      decoded.push(await decode(image, describe(image, index)));
      progress({ status: 'decoded', done: index + 1, total: items.length });
    }
    const { pixels, dims } = pack(decoded);
    const { corners, counts, labels } = flattenBoxes(items);
    return engine.evaluateDetector(pixels, dims, corners, counts, labels);
  },

  removeDetectionExamples: ({ ids }) => engine.removeDetectionExamples(ids),
  readYoloFolder: ({ files }) => engine.readYoloFolder(files),
  exportDetector: () => engine.exportDetector(),
  loadDetector: ({ bytes }) => ({ info: engine.loadDetector(new Uint8Array(bytes)), classes: engine.detectionClasses() }),

  /** Memory the engine holds in wasm (grows, never shrinks: the peak so far). */
  stats: () => ({ wasmMemoryBytes: wasm.memory.buffer.byteLength }),

  exportModel: () => engine.exportModel(),
  loadModel: ({ bytes }) => engine.loadModel(new Uint8Array(bytes)),
};

let queue = Promise.resolve();
/** The id of the call running now. */
let running = null;

self.onmessage = ({ data: { id, op, args } }) => {
  if (op === 'cancel') {
    if (open.has(args.target)) cancelled.add(args.target);
    if (args.target === running) engine?.cancel(); // a running train stops at its next step
    self.postMessage({ id, ok: true, value: null });
    return;
  }
  const progress = (value) => self.postMessage({ id, progress: value });
  const call = { cancelled: () => cancelled.has(id) };
  open.add(id);
  queue = queue.then(async () => {
    try {
      const run = operations[op];
      if (!run) throw codedError('INVALID_OPTION', `unknown operation '${op}'`);
      if (crashed) throw codedError('ENGINE_CRASHED', crashed);
      if (op !== 'create' && !engine) throw codedError('NO_ENGINE', 'the engine is not ready');
      if (call.cancelled()) throw codedError('ABORTED', `${op} was aborted before it started`);
      running = id;
      const value = await run(args ?? {}, progress, call);
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
    } finally {
      running = null;
      open.delete(id);
      cancelled.delete(id);
    }
  });
};
