// Graft: train an image classifier in the browser, on WebGPU, without sending anything anywhere.
//
// The engine runs in a module Web Worker that this class starts and owns; the page's main
// thread does nothing heavier than snapshot <img>/<canvas> elements and stays responsive.
// Training options are checked by the engine itself (the CLI's options, the same rules).

const BACKENDS = ['auto', 'webgpu', 'cpu'];
const TASKS = ['classify', 'detect'];
/** A detector's default input side: laptop-friendly, as the CLI's `--input-size`. */
const DEFAULT_INPUT_SIZE = 320;
/** Most engines a pool gets by default: each holds its own wasm memory (about 100 MB). */
const DEFAULT_MAX_WORKERS = 8;

/**
 * Every error Graft throws: `code` says what kind of failure it is (see graft.d.ts); the
 * message, for people, names the value or file at fault.
 */
export class GraftError extends Error {
  constructor(message, code, details = {}) {
    super(message);
    this.name = 'GraftError';
    this.code = code;
    Object.assign(this, details);
  }
}

const invalid = (message) => new GraftError(message, 'INVALID_ARGUMENT');

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
  throw invalid(`image ${index + 1}: expected a File, Blob, ImageBitmap, ImageData, <img>, <canvas> or <video>`);
}

async function transferables(images) {
  const list = Array.isArray(images) || images instanceof FileList ? Array.from(images) : [images];
  return Promise.all(list.map(transferable));
}

const bitmapsOf = (list) => list.filter((i) => typeof ImageBitmap !== 'undefined' && i instanceof ImageBitmap);

function checkLabel(where, label) {
  if (typeof label !== 'string' || !label.trim()) throw invalid(`${where}: label must be a non-empty string`);
}

function checkSignal(where, signal) {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid(`${where}: signal must be an AbortSignal`);
}

/** A detection example's boxes: `[{ label, box: [x0, y0, x1, y1] }]`, checked for shape here. */
function checkBoxes(where, boxes) {
  const valid = Array.isArray(boxes) && boxes.every((b) => b && typeof b.label === 'string' && b.label.trim() &&
    Array.isArray(b.box) && b.box.length === 4 && b.box.every(Number.isFinite));
  if (!valid) throw invalid(`${where}: boxes must be an array of { label, box: [x0, y0, x1, y1] } (numbers, image pixels)`);
  return boxes.map(({ label, box }) => ({ label, box: [...box] }));
}

function checkIds(where, ids, count) {
  if (!Array.isArray(ids) || ids.length !== count || !ids.every((id) => typeof id === 'string' && id)) {
    throw invalid(`${where}: ids must be an array of ${count} non-empty strings`);
  }
}

export class Graft {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #backend;
  #fallbackReason;
  #workers;
  #classes = [];
  #disposed = false;
  /** The error that killed the engine, once it has died. */
  #crash = null;
  /** `'classify'` or `'detect'`, and a detector's input side. */
  #task = 'classify';
  #inputSize = DEFAULT_INPUT_SIZE;
  #onCrash;

  constructor(token) {
    if (token !== Graft.#token) throw invalid('use `await Graft.create({ weights })` or `Graft.load(...)`');
  }

  static #token = Symbol('Graft');

  /**
   * Starts the engine: downloads (or reads from the cache) the backbone weights and picks the
   * backend. `weights` is a URL on this site or an ArrayBuffer/Uint8Array. On the CPU backend,
   * embedding is spread over `workers` engines, one per core by default.
   */
  static async create({ weights, backend = 'auto', workers, onProgress, workerUrl, onCrash, task = 'classify', inputSize = DEFAULT_INPUT_SIZE } = {}) {
    if (!TASKS.includes(task)) throw invalid(`Graft.create: task '${task}' is not valid; use 'classify' or 'detect'`);
    if (!(Number.isInteger(inputSize) && inputSize % 32 === 0 && inputSize >= 128 && inputSize <= 1024)) {
      throw invalid(`Graft.create: inputSize must be a multiple of 32 from 128 to 1024, got ${inputSize}`);
    }
    if (typeof weights !== 'string' && !(weights instanceof ArrayBuffer) && !ArrayBuffer.isView(weights)) {
      throw invalid("Graft.create: 'weights' must be a URL string or an ArrayBuffer with the backbone's safetensors");
    }
    if (!BACKENDS.includes(backend)) {
      throw invalid(`Graft.create: backend '${backend}' is not valid; use one of ${BACKENDS.map((b) => `'${b}'`).join(', ')}`);
    }
    if (workers !== undefined && !(Number.isInteger(workers) && workers >= 1 && workers <= 64)) {
      throw invalid(`Graft.create: workers must be an integer from 1 to 64, got ${workers}`);
    }
    if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('Graft.create: onProgress must be a function');
    if (onCrash !== undefined && typeof onCrash !== 'function') throw invalid('Graft.create: onCrash must be a function');
    workers ??= Math.min(globalThis.navigator?.hardwareConcurrency || 1, DEFAULT_MAX_WORKERS);
    const graft = new Graft(Graft.#token);
    graft.#task = task;
    graft.#inputSize = inputSize;
    graft.#worker = new Worker(workerUrl ?? new URL('./worker.js', import.meta.url), { type: 'module', name: 'graft-engine' });
    graft.#worker.onmessage = ({ data }) => graft.#receive(data);
    graft.#worker.onerror = (event) => {
      event.preventDefault();
      graft.#died(new GraftError(`the Graft worker failed: ${event.message ?? 'unknown error'}`, 'ENGINE_CRASHED'));
    };
    graft.#worker.onmessageerror = () => graft.#died(new GraftError('the Graft worker sent a message that could not be read', 'ENGINE_CRASHED'));
    const payload =
      typeof weights === 'string'
        ? { weights: new URL(weights, globalThis.location?.href).href, backend, workers }
        : { weights: ArrayBuffer.isView(weights) ? weights.slice().buffer : weights.slice(0), backend, workers };
    try {
      const transfer = typeof payload.weights === 'string' ? [] : [payload.weights];
      const started = await graft.#call('create', payload, onProgress, transfer);
      graft.#backend = started.backend;
      graft.#fallbackReason = started.fallbackReason;
      graft.#workers = started.workers;
    } catch (error) {
      graft.dispose();
      throw error;
    }
    // Only an instance the caller holds can be reported dead; one that fails to start rejects.
    graft.#onCrash = onCrash;
    return graft;
  }

  /** Starts an engine and loads a model file exported by `exportModel()` or the CLI. */
  static async load({ weights, model, backend, workers, onProgress, workerUrl, onCrash, task, inputSize } = {}) {
    if (!(model instanceof ArrayBuffer) && !ArrayBuffer.isView(model)) {
      throw invalid("Graft.load: 'model' must be the model file's bytes (ArrayBuffer or Uint8Array)");
    }
    const graft = await Graft.create({ weights, backend, workers, onProgress, workerUrl, onCrash, task, inputSize });
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

  /** `'classify'` or `'detect'`, as created. */
  get task() {
    return this.#task;
  }

  /** How many engines embed images: `workers` on the CPU backend, 1 on WebGPU. */
  get workers() {
    return this.#workers;
  }

  /**
   * Classification, `addExamples(label, images, { ids, onProgress, signal })`: adds images to
   * a class (created if new), each as an example with an id (yours, from
   * `ids`, or a new UUID). Images that cannot be used (undecodable, too large, or already
   * present) are skipped and listed; it rejects only when none could be added. `added` holds
   * each added image's position in `images`, id and content hash, in the order of the
   * returned `embeddings`' rows: keep them to restore the examples with `addEmbeddings`.
   * Aborting `signal` stops between chunks of images: those not added yet are skipped with
   * code `ABORTED`, those added stay. Detection takes images with boxes: see below.
   */
  async addExamples(...args) {
    return this.#task === 'detect' ? this.#addDetectionExamples(...args) : this.#addClassExamples(...args);
  }

  async #addClassExamples(label, images, { ids, onProgress, signal } = {}) {
    checkLabel('addExamples', label);
    checkSignal('addExamples', signal);
    const list = await transferables(images);
    if (ids !== undefined) checkIds('addExamples', ids, list.length);
    const result = await this.#call('addExamples', { label, images: list, ids }, onProgress, bitmapsOf(list), signal);
    this.#classes = result.classes;
    const { added, skipped, embeddings } = result;
    return { added, skipped, embeddings };
  }

  /**
   * Detection: adds one image with its boxes, `addExamples(image, [{ label, box: [x0, y0, x1,
   * y1] }], { id })` (image pixels), or many, `addExamples([{ image, boxes, id }], { onProgress,
   * signal, validation })`. An image may have no boxes (background). With `validation: true`
   * the images are held out: training scores its mAP on them after every epoch
   * (`valMAP50`). Images are kept letterboxed, 0.31 MB each at 320 px.
   * Rejects, naming the image and box, when a box is outside its image or has no area; images
   * go in by chunks of eight, each whole or not at all. Resolves to `{ ids, classes }`.
   */
  async #addDetectionExamples(first, second, third) {
    const many = Array.isArray(first);
    const items = many ? first : [{ image: first, boxes: second, id: third?.id }];
    const { onProgress, signal, validation = false } = (many ? second : third) ?? {};
    checkSignal('addExamples', signal);
    if (typeof validation !== 'boolean') throw invalid('addExamples: validation must be true or false');
    const images = await transferables(items.map((item) => item?.image));
    const prepared = items.map((item, i) => ({ image: images[i], boxes: checkBoxes(`addExamples: image ${i + 1}`, item.boxes), id: item.id }));
    const result = await this.#call('addDetectionExamples', { items: prepared, inputSize: this.#inputSize, validation }, onProgress, bitmapsOf(images), signal);
    this.#classes = result.classes;
    return result;
  }

  /**
   * Detection: the objects in one image, `[{ label, score, box: [x0, y0, x1, y1] }]` in its
   * pixels, best first, those scoring at least `minScore`.
   */
  async detect(image, { minScore = 0.25 } = {}) {
    this.#needs('detect', 'detect');
    if (!(minScore >= 0 && minScore <= 1)) throw invalid(`detect: minScore must be between 0 and 1, got ${minScore}`);
    const list = await transferables([image]);
    const [found] = await this.#call('detect', { images: list, minScore }, undefined, bitmapsOf(list));
    return found;
  }

  /**
   * Detection: reads a YOLO dataset folder (`data.yaml`, `images/`, `labels/`) with the same
   * parser as `graft train --data`. `files` lists every file of the folder as
   * `{ path, text? }` (`path` as `webkitRelativePath` gives it; `text` for `data.yaml` and
   * the label files). Resolves to `{ yaml, names, train, val }`, each image `{ path, boxes }` with
   * boxes in FRACTIONS of the image; rejects naming the file and line at fault.
   */
  async readYoloFolder(files) {
    this.#needs('detect', 'readYoloFolder');
    if (!Array.isArray(files)) throw invalid('readYoloFolder: files must be an array of { path, text? }');
    return this.#call('readYoloFolder', { files });
  }

  #needs(task, where) {
    if (this.#task !== task) throw invalid(`${where}: this instance was created with task '${this.#task}'; use Graft.create({ task: '${task}' })`);
  }

  /**
   * The backbone's embeddings of images (`n x 1280`, row-major), what `addEmbeddings` takes:
   * for search, clustering or a model of your own. Rejects if an image cannot be decoded, and
   * with code `ABORTED` when `signal` is aborted.
   */
  async embed(images, { onProgress, signal } = {}) {
    checkSignal('embed', signal);
    const list = await transferables(images);
    return this.#call('embed', { images: list }, onProgress, bitmapsOf(list), signal);
  }

  /**
   * Restores examples from embeddings that `addExamples` returned (`n x 1280`) with their
   * `ids` and `hashes` (or `images`, hashed again). Pass the `images` (one Blob per row) if the
   * model may be fine-tuned: fine-tuning learns from the images themselves.
   */
  async addEmbeddings(label, embeddings, { ids, hashes, images } = {}) {
    this.#needs('classify', 'addEmbeddings');
    checkLabel('addEmbeddings', label);
    if (!(embeddings instanceof Float32Array) || embeddings.length === 0 || embeddings.length % 1280) {
      throw invalid('addEmbeddings: embeddings must be a non-empty Float32Array of n x 1280 numbers');
    }
    const count = embeddings.length / 1280;
    checkIds('addEmbeddings', ids, count);
    if (images !== undefined && (!Array.isArray(images) || images.length !== count || !images.every((i) => i instanceof Blob))) {
      throw invalid(`addEmbeddings: images must be an array of ${count} Blobs (or File objects)`);
    }
    if (hashes !== undefined && (!Array.isArray(hashes) || hashes.length !== count)) {
      throw invalid(`addEmbeddings: hashes must be an array of ${count} strings`);
    }
    this.#classes = await this.#call('addEmbeddings', { label, embeddings, ids, hashes, images });
  }

  /** `[{ label, count }]`. */
  classes() {
    return this.#classes.map((c) => ({ ...c }));
  }

  async removeClass(label) {
    this.#needs('classify', 'removeClass');
    this.#classes = await this.#call('removeClass', { label });
  }

  async renameClass(from, to) {
    this.#needs('classify', 'renameClass');
    this.#classes = await this.#call('renameClass', { from, to });
  }

  /** Removes examples by id: a mislabelled image, say. */
  async removeExamples(ids) {
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw invalid('removeExamples: ids must be an array of strings');
    this.#classes = await this.#call(this.#task === 'detect' ? 'removeDetectionExamples' : 'removeExamples', { ids });
  }

  /**
   * Trains: the head is solved to convergence on the embeddings (its L2 penalty picked by
   * cross-validation) and, with `fineTuneBlocks: K`, the backbone's last K blocks are then
   * fine-tuned with it on the images. `onProgress` receives every event (`status`: 'note',
   * 'search', 'head', 'baseline', 'step', 'epoch'); aborting `signal` stops at the next step,
   * keeping the best model so far. Resolves to the report, the CLI's `--json` report.
   */
  async train(options = {}) {
    if (options === null || typeof options !== 'object') throw invalid('train: options must be an object');
    const { onProgress, signal, ...rest } = options;
    if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('train: onProgress must be a function');
    checkSignal('train', signal);
    const trainOptions = Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined));
    const op = this.#task === 'detect' ? 'trainDetector' : 'train';
    return this.#call(op, { options: trainOptions }, onProgress, [], signal);
  }

  /** Top classes for one image: `[{ label, score }]`, best first. */
  async predict(image, { topK = 3 } = {}) {
    this.#needs('classify', 'predict');
    if (!Number.isInteger(topK) || topK < 1) throw invalid(`predict: topK must be a positive integer, got ${topK}`);
    const list = await transferables([image]);
    const [predictions] = await this.#call('predict', { images: list, topK }, undefined, bitmapsOf(list));
    return predictions;
  }

  /**
   * Top classes for one image and where the evidence for a class lies: `{ predictions,
   * explanation: { label, score, heatmap, rows, cols, region, colours } }`. The class is the
   * predicted one unless `label` names another; `fine` gives a 14x14 map (better localised, a
   * backward pass) instead of 7x7. Draw it with `drawExplanation`.
   */
  async explain(image, { label, topK = 3, fine = false } = {}) {
    this.#needs('classify', 'explain');
    if (!Number.isInteger(topK) || topK < 1) throw invalid(`explain: topK must be a positive integer, got ${topK}`);
    if (label !== undefined) checkLabel('explain', label);
    if (typeof fine !== 'boolean') throw invalid(`explain: fine must be true or false, got ${fine}`);
    const [transferred] = await transferables([image]);
    return this.#call('explain', { image: transferred, label, topK, fine }, undefined, bitmapsOf([transferred]));
  }

  /** Accuracy, per-class precision/recall and the confusion matrix on `[{ image, label }]`. */
  async evaluate(labelledImages, { onProgress } = {}) {
    if (!Array.isArray(labelledImages) || labelledImages.length === 0) {
      throw invalid(`evaluate: expected a non-empty array of ${this.#task === 'detect' ? '{ image, boxes }' : '{ image, label }'}`);
    }
    if (this.#task === 'detect') {
      const images = await transferables(labelledImages.map((item) => item.image));
      const items = images.map((image, i) => ({ image, boxes: checkBoxes(`evaluate: image ${i + 1}`, labelledImages[i].boxes) }));
      return this.#call('evaluateDetector', { items }, onProgress, bitmapsOf(images));
    }
    const images = await transferables(labelledImages.map((item) => item.image));
    const items = images.map((image, i) => ({ image, label: labelledImages[i].label }));
    return this.#call('evaluate', { items }, onProgress, bitmapsOf(images));
  }

  /** `{ wasmMemoryBytes }`: the engine's WebAssembly memory, which only grows (so: its peak). */
  async stats() {
    return this.#call('stats', {});
  }

  /** The trained model file (safetensors), readable by `Graft.load` and `graft predict`. */
  async exportModel() {
    return this.#call(this.#task === 'detect' ? 'exportDetector' : 'exportModel', {});
  }

  /** Replaces the current model with a model file's; resolves to its description. */
  async loadModel(model) {
    if (!(model instanceof ArrayBuffer) && !ArrayBuffer.isView(model)) throw invalid('loadModel: expected the model file\'s bytes');
    const bytes = ArrayBuffer.isView(model) ? model.slice().buffer : model.slice(0);
    if (this.#task !== 'detect') return this.#call('loadModel', { bytes }, undefined, [bytes]);
    // A detector brings its input size; examples added at another size could not train it.
    const { info, classes } = await this.#call('loadDetector', { bytes }, undefined, [bytes]);
    this.#inputSize = info.inputSize;
    this.#classes = classes;
    return info;
  }

  /** Stops the worker and frees its memory; pending calls reject. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#worker?.terminate();
    this.#failAll(new GraftError('this Graft instance was disposed', 'DISPOSED'));
  }

  /** Runs `op` in the worker; aborting `signal` asks the worker to stop that call. */
  #call(op, args, onProgress, transfer = [], signal) {
    if (this.#disposed) return Promise.reject(new GraftError('this Graft instance was disposed', 'DISPOSED'));
    if (this.#crash) return Promise.reject(this.#crash);
    if (signal?.aborted) return Promise.reject(new GraftError(`${op} was aborted before it started`, 'ABORTED'));
    const id = this.#nextId++;
    const cancel = () => this.#worker.postMessage({ id: 0, op: 'cancel', args: { target: id } });
    signal?.addEventListener('abort', cancel, { once: true });
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args }, transfer);
    }).finally(() => signal?.removeEventListener('abort', cancel));
  }

  #receive({ id, ok, value, error, code, skipped, progress }) {
    const pending = this.#pending.get(id);
    if (!pending) return;
    if (progress !== undefined) {
      pending.onProgress?.(progress);
      return;
    }
    this.#pending.delete(id);
    if (ok) pending.resolve(value);
    else pending.reject(new GraftError(error, code, skipped ? { skipped } : {}));
    if (code === 'ENGINE_CRASHED') this.#died(new GraftError(error, code));
  }

  /** The engine is gone: pending calls fail, later ones too, and `onCrash` hears it once. */
  #died(error) {
    if (this.#disposed || this.#crash) return;
    this.#crash = error;
    this.#worker.terminate();
    this.#failAll(error);
    this.#onCrash?.(error);
  }

  #failAll(error) {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

/**
 * Draws `image` at its own size on `canvas` (resized to fit it) with `explanation`'s map over the
 * region the model saw, at `opacity`; what lies outside that region is dimmed. The colours are
 * the engine's, the same as the CLI's `graft explain --out` pictures.
 */
export async function drawExplanation(canvas, image, explanation, { opacity = 0.6 } = {}) {
  if (!(opacity >= 0 && opacity <= 1)) throw invalid(`drawExplanation: opacity must be between 0 and 1, got ${opacity}`);
  const { rows, cols, colours, region } = explanation ?? {};
  if (!(colours instanceof Uint8ClampedArray) || colours.length !== rows * cols * 4) {
    throw invalid('drawExplanation: expected an explanation from graft.explain()');
  }
  const source = image instanceof Blob ? await createImageBitmap(image, { imageOrientation: 'from-image' }) : image;
  const width = source.naturalWidth ?? source.videoWidth ?? source.width;
  const height = source.naturalHeight ?? source.videoHeight ?? source.height;
  if (!width || !height) throw invalid('drawExplanation: the image has no size yet (not loaded?)');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d');
  context.drawImage(source, 0, 0, width, height);
  if (source !== image) source.close();
  context.fillStyle = 'rgba(0, 0, 0, 0.5)';
  const { x, y, width: w, height: h } = region;
  for (const [left, top, right, bottom] of [[0, 0, width, y], [0, y + h, width, height], [0, y, x, y + h], [x + w, y, width, y + h]]) {
    if (right > left && bottom > top) context.fillRect(left, top, right - left, bottom - top);
  }
  const cells = new OffscreenCanvas(cols, rows);
  cells.getContext('2d').putImageData(new ImageData(colours, cols, rows), 0, 0);
  context.save();
  context.globalAlpha = opacity;
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'high';
  context.drawImage(cells, x, y, w, h);
  context.restore();
}

export default Graft;
