// Graft: train an image classifier in the browser, on WebGPU, without sending anything anywhere.
//
// The engine runs in a module Web Worker that this class starts and owns; the page's main
// thread only decodes nothing heavier than <img>/<canvas> snapshots and stays responsive.

const BACKENDS = ['auto', 'webgpu', 'cpu'];
const TRAIN_OPTIONS = {
  epochs: 'integer',
  batchSize: 'integer',
  learningRate: 'number',
  validationSplit: 'number',
  seed: 'integer',
  hiddenUnits: 'integer',
  dropout: 'number',
  fineTuneBlocks: 'integer',
  fineTuneEpochs: 'integer',
  fineTuneBatchSize: 'integer',
  fineTuneLearningRate: 'number',
  backboneLrFactor: 'number',
  trainBatchNorm: 'boolean',
  augment: 'augment',
  augmentVariants: 'integer',
  labelSmoothing: 'number',
  balance: 'balance',
  patience: 'integer',
  onEpoch: 'function',
  onProgress: 'function',
  signal: 'AbortSignal',
};
const AUGMENTATIONS = ['flip', 'crop', 'rotate', 'brightness', 'contrast'];
const BALANCE = ['auto', 'on', 'off'];

function checkOptions(where, options, schema) {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object`);
  for (const [key, value] of Object.entries(options)) {
    const kind = schema[key];
    if (!kind) {
      throw new TypeError(`${where}: unknown option '${key}'; valid options are ${Object.keys(schema).join(', ')}`);
    }
    if (value === undefined) continue;
    const ok =
      kind === 'integer' ? Number.isInteger(value) && value >= 0
      : kind === 'number' ? typeof value === 'number' && Number.isFinite(value)
      : kind === 'function' ? typeof value === 'function'
      : kind === 'AbortSignal' ? value instanceof AbortSignal
      : kind === 'boolean' ? typeof value === 'boolean'
      : kind === 'balance' ? BALANCE.includes(value)
      : kind === 'augment' ? isAugment(value)
      : true;
    const expected = {
      integer: 'a non-negative integer',
      balance: `one of ${BALANCE.map((b) => `'${b}'`).join(', ')}`,
      augment: `an object of booleans with keys among ${AUGMENTATIONS.join(', ')}`,
    }[kind] ?? `a ${kind}`;
    if (!ok) throw new TypeError(`${where}: option '${key}' must be ${expected}, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return options;
}

function isAugment(value) {
  return value !== null && typeof value === 'object' && Object.entries(value).every(([k, v]) => AUGMENTATIONS.includes(k) && typeof v === 'boolean');
}

/** Turns any supported image into something a worker can receive (Blob, ImageBitmap, ImageData). */
async function transferable(image, index) {
  if (image instanceof Blob || (typeof ImageData !== 'undefined' && image instanceof ImageData)) return image;
  if (typeof ImageBitmap !== 'undefined' && image instanceof ImageBitmap) return image;
  const drawable =
    (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement) ||
    (typeof HTMLCanvasElement !== 'undefined' && image instanceof HTMLCanvasElement) ||
    (typeof OffscreenCanvas !== 'undefined' && image instanceof OffscreenCanvas) ||
    (typeof HTMLVideoElement !== 'undefined' && image instanceof HTMLVideoElement);
  if (drawable) {
    if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !image.complete) {
      await image.decode();
    }
    return createImageBitmap(image);
  }
  throw new TypeError(`image ${index + 1}: expected a File, Blob, ImageBitmap, ImageData, <img>, <canvas> or <video>`);
}

async function transferables(images) {
  const list = Array.isArray(images) || images instanceof FileList ? Array.from(images) : [images];
  return Promise.all(list.map(transferable));
}

export class Graft {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #backend;
  #fallbackReason;
  #classes = [];
  #disposed = false;

  constructor(token) {
    if (token !== Graft.#token) throw new TypeError('use `await Graft.create({ weights })` or `Graft.load(...)`');
  }

  static #token = Symbol('Graft');

  /**
   * Starts the engine: downloads (or reads from the cache) the backbone weights and picks the
   * backend. `weights` is a URL on this site or an ArrayBuffer/Uint8Array.
   */
  static async create({ weights, backend = 'auto', onProgress, workerUrl } = {}) {
    if (typeof weights !== 'string' && !(weights instanceof ArrayBuffer) && !ArrayBuffer.isView(weights)) {
      throw new TypeError("Graft.create: 'weights' must be a URL string or an ArrayBuffer with the backbone's safetensors");
    }
    if (!BACKENDS.includes(backend)) {
      throw new TypeError(`Graft.create: backend '${backend}' is not valid; use one of ${BACKENDS.map((b) => `'${b}'`).join(', ')}`);
    }
    if (onProgress !== undefined && typeof onProgress !== 'function') throw new TypeError('Graft.create: onProgress must be a function');
    const graft = new Graft(Graft.#token);
    graft.#worker = new Worker(workerUrl ?? new URL('./worker.js', import.meta.url), { type: 'module', name: 'graft-engine' });
    graft.#worker.onmessage = ({ data }) => graft.#receive(data);
    graft.#worker.onerror = (event) => graft.#failAll(new Error(`the Graft worker failed: ${event.message ?? 'unknown error'}`));
    const payload =
      typeof weights === 'string'
        ? { weights: new URL(weights, globalThis.location?.href).href, backend }
        : { weights: ArrayBuffer.isView(weights) ? weights.slice().buffer : weights.slice(0), backend };
    try {
      const transfer = typeof payload.weights === 'string' ? [] : [payload.weights];
      const { backend: actual, fallbackReason } = await graft.#call('create', payload, onProgress, transfer);
      graft.#backend = actual;
      graft.#fallbackReason = fallbackReason;
    } catch (error) {
      graft.dispose();
      throw error;
    }
    return graft;
  }

  /** Starts an engine and loads a model file exported by `exportModel()` or the CLI. */
  static async load({ weights, model, backend, onProgress, workerUrl } = {}) {
    if (!(model instanceof ArrayBuffer) && !ArrayBuffer.isView(model)) {
      throw new TypeError("Graft.load: 'model' must be the model file's bytes (ArrayBuffer or Uint8Array)");
    }
    const graft = await Graft.create({ weights, backend, onProgress, workerUrl });
    try {
      await graft.loadModel(model);
    } catch (error) {
      graft.dispose();
      throw error;
    }
    return graft;
  }

  /** `'webgpu'` or `'cpu'`: what actually runs. */
  get backend() {
    return this.#backend;
  }

  /** Why `auto` fell back to the CPU, or `null`. */
  get fallbackReason() {
    return this.#fallbackReason;
  }

  /**
   * Adds images to a class (created if new). Images that cannot be decoded are skipped and
   * listed in the result; it rejects only when none could be added. The result also holds
   * the added images' embeddings (`added x 1280`) and their positions in `images`: keep them
   * to restore the class later with `addEmbeddings`, without running the backbone again.
   */
  async addExamples(label, images, { onProgress } = {}) {
    if (typeof label !== 'string' || !label.trim()) throw new TypeError('addExamples: label must be a non-empty string');
    const list = await transferables(images);
    const bitmaps = list.filter((i) => typeof ImageBitmap !== 'undefined' && i instanceof ImageBitmap);
    const result = await this.#call('addExamples', { label, images: list }, onProgress, bitmaps);
    this.#classes = result.classes;
    const { added, addedIndices, skipped, embeddings } = result;
    return { added, addedIndices, skipped, embeddings };
  }

  /**
   * Adds embeddings that `addExamples` returned earlier (a multiple of 1280 numbers) to a class.
   * Pass the same images too (`Blob`s, one per embedding) if the model may be fine-tuned:
   * fine-tuning learns from the images themselves.
   */
  async addEmbeddings(label, embeddings, images) {
    if (typeof label !== 'string' || !label.trim()) throw new TypeError('addEmbeddings: label must be a non-empty string');
    if (!(embeddings instanceof Float32Array)) throw new TypeError('addEmbeddings: embeddings must be a Float32Array');
    if (images !== undefined && (!Array.isArray(images) || !images.every((i) => i instanceof Blob))) {
      throw new TypeError('addEmbeddings: images must be an array of Blobs (or File objects)');
    }
    this.#classes = await this.#call('addEmbeddings', { label, embeddings, images });
  }

  /** `[{ label, count }]`. */
  classes() {
    return this.#classes.map((c) => ({ ...c }));
  }

  async removeClass(label) {
    this.#classes = await this.#call('removeClass', { label });
  }

  async renameClass(from, to) {
    this.#classes = await this.#call('renameClass', { from, to });
  }

  /**
   * Trains a new head (phase 1) and, with `fineTuneBlocks: K`, fine-tunes the backbone's last K
   * blocks with it on the images (phase 2). Resolves to the report (`history`, `fineTune`,
   * `validation`, ...); `onEpoch` receives `{ phase, epoch, loss, accuracy, valLoss,
   * valAccuracy }` after each epoch, `onProgress` `{ phase, epoch, step, totalSteps }` after
   * each fine-tuning step; aborting `signal` stops at the next step or epoch, keeping the best
   * model so far.
   */
  async train(options = {}) {
    const { onEpoch, onProgress, signal, ...rest } = checkOptions('train', options, TRAIN_OPTIONS);
    if (signal?.aborted) throw new DOMException('training was aborted before it started', 'AbortError');
    const cancel = () => this.#worker.postMessage({ id: 0, op: 'cancel' });
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const options = Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined));
      return await this.#call('train', { options }, (progress) => {
        if (progress.status === 'epoch') onEpoch?.(progress.epoch);
        else if (progress.status === 'step') onProgress?.(progress.step);
      });
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /** Top classes for one image: `[{ label, score }]`, best first. */
  async predict(image, { topK = 3 } = {}) {
    if (!Number.isInteger(topK) || topK < 1) throw new TypeError(`predict: topK must be a positive integer, got ${topK}`);
    const [item] = await transferables([image]);
    const [predictions] = await this.#call('predict', { images: [item], topK }, undefined, item instanceof ImageBitmap ? [item] : []);
    return predictions;
  }

  /** Accuracy, per-class precision/recall and the confusion matrix on `[{ image, label }]`. */
  async evaluate(labelledImages, { onProgress } = {}) {
    if (!Array.isArray(labelledImages) || labelledImages.length === 0) {
      throw new TypeError('evaluate: expected a non-empty array of { image, label }');
    }
    const images = await transferables(labelledImages.map((item) => item.image));
    const items = images.map((image, i) => ({ image, label: labelledImages[i].label }));
    return this.#call('evaluate', { items }, onProgress);
  }

  /** `{ wasmMemoryBytes }`: the engine's WebAssembly memory, which only grows (so: its peak). */
  async stats() {
    return this.#call('stats', {});
  }

  /** The trained model file (safetensors), readable by `Graft.load` and `graft predict`. */
  async exportModel() {
    return this.#call('exportModel', {});
  }

  /** Replaces the current head with a model file's; resolves to its description. */
  async loadModel(model) {
    const bytes = ArrayBuffer.isView(model) ? model.slice().buffer : model.slice(0);
    return this.#call('loadModel', { bytes }, undefined, [bytes]);
  }

  /** Stops the worker and frees its memory; pending calls reject. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#worker?.terminate();
    this.#failAll(new Error('this Graft instance was disposed'));
  }

  #call(op, args, onProgress, transfer = []) {
    if (this.#disposed) return Promise.reject(new Error('this Graft instance was disposed'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args }, transfer);
    });
  }

  #receive({ id, ok, value, error, progress }) {
    const pending = this.#pending.get(id);
    if (!pending) return;
    if (progress !== undefined) {
      pending.onProgress?.(progress);
      return;
    }
    this.#pending.delete(id);
    if (ok) pending.resolve(value);
    else pending.reject(new Error(error));
  }

  #failAll(error) {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

export default Graft;
