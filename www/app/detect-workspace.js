// The detection project: classes, images with their boxes (image pixels), the trained detector
// and its results, kept in IndexedDB; the engine (a detection session) is given the images when
// training needs them (`prepareSession`): an image whose boxes or use changed since is taken
// back (`removeExamples`) and given again, and a fresh session is started when the input size
// changed or the session knows a class name no box has any more.
// Same interface as the classifier's Workspace where panels share it (status, keep); what the
// two do alike is their base, ProjectWorkspace.

import { Graft } from '../../pkg/graft.js';
import { newId } from './store.js';
import { thumbnail } from './images.js';
import { ProjectWorkspace, plural } from './project-workspace.js';

/** Images stored (and given to the engine) per step: progress and storage advance in these. */
const ADD_CHUNK = 8;
/**
 * The training options a new project starts with, shown in the form before any training and
 * kept with the project. `epochs` and `inputSize` are the engine's DEFAULT_EPOCHS and
 * DEFAULT_INPUT_SIZE (src/detect/train.rs); `flip` is the app's choice (the engine flips only
 * when asked): most objects look the same mirrored.
 */
export const DETECT_DEFAULTS = Object.freeze({ epochs: 20, inputSize: 320, flip: true, fineTuneBlocks: 0 });
export const INPUT_SIZES = [128, 160, 192, 224, 256, 320, 384, 416, 512, 640];
const pathOf = (file) => file.relativePath || file.webkitRelativePath || file.name;

/** The image's width and height as the engine decodes it (EXIF orientation applied). */
async function imageSize(blob) {
  const bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' });
  const size = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return size;
}

export class DetectWorkspace extends ProjectWorkspace {
  constructor(store, preset) {
    super(store, preset, 'Object');
    /** What the engine's session holds: its input side and, per example id, its boxes' signature. */
    this.session = { side: null, held: new Map() };
    this.state = this.emptyState();
  }

  emptyState() {
    return { id: this.preset.id, classes: [], images: [], model: null, modelInfo: null, report: null, options: { ...DETECT_DEFAULTS } };
  }

  /** Images stored in the project, for the storage line. */
  imageCount() {
    return this.state.images.length;
  }

  /** Loads the saved project (or an empty one), starts the engine and loads the saved model. */
  async start({ backend = 'auto', onProgress } = {}) {
    const saved = await this.store.project(this.preset.id);
    if (saved) {
      this.state = { ...this.emptyState(), ...saved, options: { ...DETECT_DEFAULTS, ...saved.options } };
    } else {
      this.state.classes = (this.preset.classes ?? []).map((label) => ({ id: newId(), label }));
    }
    // Image records no image lists (a removal stopped between saving the project and deleting
    // the image) only take space.
    const listed = new Set(this.state.images.map((i) => i.id));
    const orphans = (await this.store.imageIds(this.state.id)).filter((id) => !listed.has(id));
    if (orphans.length) await this.store.deleteImages(orphans);
    this.changed();
    return this.startEngine({ backend, task: 'detect' }, onProgress);
  }

  /** A new engine at the project's input side (see `startEngine` and `restart`). */
  newEngine(onProgress) {
    return this.createEngine(this.state.options.inputSize, onProgress);
  }

  /** Only the model goes back into a new engine: training gives it the images. */
  async restore(graft) {
    await this.loadSavedModel(graft);
    return [];
  }

  restoredNote() {
    return 'your project is intact.';
  }

  async createEngine(side, onProgress) {
    const graft = await Graft.create({ ...this.createOptions, inputSize: side, onProgress });
    this.session = { side, held: new Map() };
    return graft;
  }

  /** Puts the saved model in `graft` (a detector brings its own input side). */
  async loadSavedModel(graft) {
    if (!this.state.model) return;
    try {
      const info = await graft.loadModel(this.state.model);
      this.state.modelInfo = info;
      this.sessionTakes(info.inputSize);
    } catch (error) {
      this.state.model = null;
      this.state.modelInfo = null;
      throw new Error(`the saved model could not be loaded (${error.message}); train again`);
    }
  }

  /** A loaded model of another side replaced the session's examples (see `loadModel`). */
  sessionTakes(side) {
    if (side !== this.session.side) this.session = { side, held: new Map() };
  }

  /** The project as stored, from the state and `changes`. */
  record(changes = {}) {
    if (this.stopped) this.engine(); // throws: this tab let the project go
    const { id, classes, images, model, modelInfo, report, options } = { ...this.state, ...changes };
    return { id, task: 'detect', classes, images, model, modelInfo, report, options };
  }

  /**
   * Saves the project with the changes `build(state)` returns, and only then makes them the
   * state: a change storage refuses is not shown, as a reload would not find it. Changes run one
   * at a time, each built from the state the one before left. `write(record)` stores the record
   * (by default the project alone). Resolves to the changes.
   */
  update(build, failure = 'the project could not be saved', write = (record) => this.store.saveProject(record)) {
    return this.serially(async () => {
      const changes = build(this.state);
      const record = this.record(changes);
      try {
        await write(record);
        Object.assign(this.state, changes);
        return changes;
      } catch (error) {
        throw await this.storageError(error, failure);
      } finally {
        this.changed();
      }
    });
  }

  // ---- Classes ----

  async addClass(label) {
    const { classes } = await this.update((state) => ({ classes: [...state.classes, { id: newId(), label: this.checkLabel(label ?? this.nextLabel()) }] }));
    return classes.at(-1);
  }

  async renameClass(id, label) {
    await this.update((state) => {
      this.classById(id);
      const renamed = this.checkLabel(label, id);
      return { classes: state.classes.map((c) => (c.id === id ? { ...c, label: renamed } : c)) };
    });
  }

  /** Deletes a class and every box of it. */
  async removeClass(id) {
    await this.update((state) => {
      this.classById(id);
      return {
        classes: state.classes.filter((c) => c.id !== id),
        images: state.images.map((image) => ({ ...image, boxes: image.boxes.filter((b) => b.classId !== id) })),
      };
    });
  }

  boxCount(classId) {
    return this.state.images.reduce((n, image) => n + image.boxes.filter((b) => b.classId === classId).length, 0);
  }

  // ---- Images and boxes ----

  imageById(id) {
    const image = this.state.images.find((i) => i.id === id);
    if (!image) throw new Error('that image is no longer in the project');
    return image;
  }

  /** The stored blob of an image. */
  async blob(id) {
    return (await this.store.image(id))?.blob ?? null;
  }

  /**
   * Stores images with their boxes (`[{ file, boxes: [{ classId, fraction? | box? }], split }]`;
   * fractions of the image become pixels once it is decoded), a chunk at a time, each chunk
   * with the project that lists it. Images whose path and size are already in the project are
   * left out. Resolves to `{ added, repeated, skipped: [{ name, reason }] }`.
   */
  addImages(items, what = 'Adding images') {
    return this.oneImport(async () => {
      const known = new Set(this.state.images.map((i) => `${i.source}|${i.bytes}`));
      const fresh = items.filter((item) => !known.has(`${pathOf(item.file)}|${item.file.size}`));
      const summary = { added: 0, repeated: items.length - fresh.length, skipped: [] };
      for (let offset = 0; offset < fresh.length; offset += ADD_CHUNK) {
        this.setActivity({ label: what, done: offset, total: fresh.length });
        const entries = [];
        const records = [];
        for (const { file, boxes = [], split = 'train' } of fresh.slice(offset, offset + ADD_CHUNK)) {
          let size;
          try {
            size = await imageSize(file);
          } catch {
            summary.skipped.push({ name: pathOf(file), reason: 'not an image this browser can decode' });
            continue;
          }
          const id = newId();
          const toPixels = ({ classId, fraction, box }) => ({ classId, box: box ?? [fraction[0] * size.width, fraction[1] * size.height, fraction[2] * size.width, fraction[3] * size.height] });
          entries.push({ id, name: file.name, source: pathOf(file), bytes: file.size, ...size, split, boxes: boxes.map(toPixels) });
          records.push({ id, projectId: this.state.id, name: file.name, blob: file, thumb: await thumbnail(file) });
        }
        if (!records.length) continue;
        await this.update(
          (state) => ({ images: [...state.images, ...entries] }),
          `${plural(fresh.length - offset, 'image')} could not be added (${plural(summary.added, 'image was', 'images were')} saved before)`,
          (record) => this.store.saveImages(record, records),
        );
        summary.added += entries.length;
      }
      return summary;
    });
  }

  /**
   * Imports a folder in the YOLO layout (data.yaml, images/<split>, labels/<split>): the engine
   * reads it (one parser, the CLI's); train images become training examples, val images the
   * held-out set. `files` carry their path (`webkitRelativePath`, or `relativePath` from a drop).
   */
  importYolo(files) {
    return this.oneImport(async () => {
      const list = Array.from(files).filter((f) => !pathOf(f).split('/').some((part) => part.startsWith('.')));
      // Only the files the engine reads are read: data.yaml and the label files, which lie under
      // a `labels` folder, or beside their image (its name, but `.txt`) when no `images` folder
      // is above it. Notes and logs are passed by path only.
      const stem = (path) => path.replace(/\.[^./]*$/, '');
      const stems = new Set(list.map(pathOf).filter((path) => !/\.txt$/i.test(path)).map(stem));
      const isRead = (path) => /\.ya?ml$/i.test(path) || (/\.txt$/i.test(path) && (path.split('/').includes('labels') || stems.has(stem(path))));
      const entries = await Promise.all(list.map(async (file) => ({ path: pathOf(file), ...(isRead(pathOf(file)) ? { text: await file.text() } : {}) })));
      const folder = await this.engine().readYoloFolder(entries);
      const byPath = new Map(list.map((file) => [pathOf(file), file]));
      // Every name is checked before any class is made, so a bad one changes nothing. Into an
      // empty project the folder brings its own classes: unused ones (the preset's) go.
      const classIds = new Map();
      await this.update((state) => {
        const classes = state.images.length ? [...state.classes] : state.classes.filter((c) => folder.names.includes(c.label));
        for (const label of folder.names) {
          let cls = classes.find((c) => c.label === label);
          if (!cls) {
            cls = { id: newId(), label: this.checkLabel(label, null, classes) };
            classes.push(cls);
          }
          classIds.set(label, cls.id);
        }
        return { classes };
      });
      const items = [];
      const missing = [];
      for (const split of ['train', 'val']) {
        for (const { path, boxes } of folder[split]) {
          const file = byPath.get(path);
          if (!file) {
            missing.push(path);
            continue;
          }
          items.push({ file, split, boxes: boxes.map(({ label, box }) => ({ classId: classIds.get(label), fraction: box })) });
        }
      }
      const summary = await this.addImages(items, 'Importing the YOLO folder');
      summary.skipped.push(...missing.map((name) => ({ name, reason: 'listed by the folder but not found among its files' })));
      summary.classes = folder.names;
      summary.splits = { train: folder.train.length, val: folder.val.length };
      return summary;
    });
  }

  /** Replaces an image's boxes (`[{ classId, box }]`, image pixels). */
  async setBoxes(imageId, boxes) {
    const kept = boxes.map(({ classId, box }) => ({ classId, box: box.map((v) => Math.round(v * 100) / 100) }));
    await this.update((state) => this.changeImage(state, imageId, { boxes: kept }), 'the boxes could not be saved');
  }

  /** `'train'` or `'val'` (held out to measure the detector). */
  async setSplit(imageId, split) {
    await this.update((state) => this.changeImage(state, imageId, { split }));
  }

  /** The `images` change that gives image `imageId` the fields `fields`. */
  changeImage(state, imageId, fields) {
    this.imageById(imageId);
    return { images: state.images.map((image) => (image.id === imageId ? { ...image, ...fields } : image)) };
  }

  /** Takes an image out of the project, then deletes it (`start` sweeps one left behind). */
  async removeImage(imageId) {
    await this.update((state) => {
      this.imageById(imageId);
      return { images: state.images.filter((i) => i.id !== imageId) };
    });
    await this.store.deleteImages([imageId]);
  }

  /** An image's boxes as the engine takes them: class names, and only of known classes. */
  engineBoxes(image) {
    const labels = new Map(this.state.classes.map((c) => [c.id, c.label]));
    return image.boxes.filter((b) => labels.has(b.classId)).map((b) => ({ label: labels.get(b.classId), box: b.box }));
  }

  // ---- Training, results, detection ----

  /**
   * Makes the engine's session hold exactly the project's images with their current boxes, at
   * `side`: training images to train on, held-out ones (`validation`) to score every epoch.
   * Changed images are taken out and given again; a fresh session is started when the side
   * changed or it knows a class name no box has any more (a class renamed or deleted), which
   * the detector would otherwise learn as a class.
   */
  async prepareSession(side, signal) {
    const signature = (image) => JSON.stringify([image.split, this.engineBoxes(image)]);
    const wanted = new Map(this.state.images.map((image) => [image.id, signature(image)]));
    const labels = new Set(this.state.images.flatMap((image) => this.engineBoxes(image).map((b) => b.label)));
    let fresh = false;
    if (side !== this.session.side || this.engine().classes().some((c) => !labels.has(c.label))) {
      this.setActivity({ label: 'Starting a fresh detection session', done: 0, total: 0 });
      const graft = await this.createEngine(side);
      if (this.stopped) {
        graft.dispose();
        this.engine(); // throws: this tab let the project go while the engine started
      }
      this.graft?.dispose();
      this.graft = graft;
      fresh = true;
    }
    const changed = [...this.session.held].filter(([id, held]) => wanted.get(id) !== held).map(([id]) => id);
    if (changed.length) {
      await this.engine().removeExamples(changed);
      for (const id of changed) this.session.held.delete(id);
    }
    const missing = this.state.images.filter((image) => !this.session.held.has(image.id));
    for (const split of ['train', 'val']) {
      const group = missing.filter((image) => image.split === split);
      for (let offset = 0; offset < group.length; offset += ADD_CHUNK) {
        if (signal?.aborted) throw Object.assign(new Error('training was stopped while the images were read'), { code: 'ABORTED' });
        this.setActivity({ label: `Reading the ${split === 'train' ? 'training' : 'held-out'} images`, done: offset, total: group.length });
        const chunk = group.slice(offset, offset + ADD_CHUNK);
        const examples = await Promise.all(chunk.map(async (image) => ({ id: image.id, image: await this.blob(image.id), boxes: this.engineBoxes(image) })));
        await this.engine().addExamples(examples, { validation: split === 'val' });
        for (const image of chunk) this.session.held.set(image.id, wanted.get(image.id));
      }
    }
    return fresh;
  }

  /**
   * Trains on the training images (one without boxes is background), scoring the held-out
   * ones after every epoch; the engine's report of the last scoring in full (per class, the
   * precision-recall curves) is the results. `options`: `{ epochs, inputSize, flip,
   * fineTuneBlocks }`.
   * `onProgress(event, elapsedMs)` gets the engine's step and epoch events.
   */
  async train(options, { onProgress, signal } = {}) {
    const training = this.state.images.filter((i) => i.split === 'train');
    if (!training.some((image) => this.engineBoxes(image).length)) throw new Error('draw boxes on at least one training image before training');
    // Busy at once: the Train button is disabled before anything is awaited.
    this.setActivity({ label: 'Preparing the training', done: 0, total: 0 });
    const started = performance.now();
    let fresh = false;
    try {
      fresh = await this.prepareSession(options.inputSize, signal);
      this.setActivity({ label: 'Training', done: 0, total: 0 });
      const graft = this.engine();
      const { evaluation = null, ...trained } = await graft.train({
        epochs: options.epochs,
        augment: { flip: options.flip },
        fineTuneBlocks: options.fineTuneBlocks,
        signal,
        onProgress: (event) => {
          if (event.type === 'step') this.setActivity({ label: 'Training', done: event.step, total: event.totalSteps });
          onProgress?.(event, performance.now() - started);
        },
      });
      const model = await graft.exportModel();
      const modelInfo = { labels: graft.classes().map((c) => c.label), inputSize: options.inputSize };
      const heldOut = this.state.images.filter((i) => i.split === 'val').length;
      const report = { training: trained, evaluation, heldOut, seconds: (performance.now() - started) / 1000 };
      // The engine holds this detector now: it is the project's even if storage refuses it
      // (the error says so, and the next change saves it).
      Object.assign(this.state, { model, modelInfo, report, options: { ...options } });
      await this.update(() => ({}), 'the trained detector works here but is not saved in this browser yet (download it, or free space and it is saved with your next change)');
      return report;
    } catch (error) {
      // A fresh session has no model: the saved one keeps Try it working.
      if (fresh && this.graft && this.state.model && error.code !== 'ENGINE_CRASHED') await this.loadSavedModel(this.graft).catch(() => {});
      throw error;
    } finally {
      this.setActivity(null);
    }
  }

  /** The objects in an image scoring at least `minScore`. */
  async detect(image, minScore) {
    if (!this.state.model) throw new Error('train a detector or import one first');
    return this.engine().detect(image, { minScore });
  }

  async exportModel() {
    if (!this.state.model) throw new Error('there is no trained detector yet');
    return this.state.model;
  }

  /** Loads a detector file and keeps it; if storage refuses it, the previous one stays. */
  async importModel(bytes) {
    const graft = this.engine();
    const info = await graft.loadModel(bytes);
    this.sessionTakes(info.inputSize);
    try {
      await this.update(() => ({ model: new Uint8Array(bytes), modelInfo: info, report: null }), 'the imported detector could not be kept');
    } catch (error) {
      if (this.state.model) await graft.loadModel(this.state.model).then((previous) => this.sessionTakes(previous.inputSize), () => {});
      throw error;
    }
    return info;
  }

  /** Deletes every stored project, image and model; the next training starts a fresh session. */
  async deleteEverything() {
    await this.saving; // a change being saved is not written back after
    await this.store.deleteEverything();
    this.state = this.emptyState();
    this.session = { side: null, held: new Map() };
    this.changed();
  }
}
