// The workspace: one project's classes, images, trained model and last report, kept in step
// between the Graft engine (which holds embeddings and the head) and IndexedDB (which keeps
// everything across reloads). Components read `workspace.state` and listen for 'change'.

import { Graft } from '../../pkg/graft.js';
import { newId } from './store.js';
import { thumbnail } from './images.js';

const WEIGHTS_URL = new URL('../../weights/efficientnet_lite0.safetensors', import.meta.url).href;
/** Images handed to the engine per call: progress and storage advance in these steps. */
const ADD_CHUNK = 16;

export const DEFAULT_OPTIONS = Object.freeze({ epochs: 20, batchSize: 16, learningRate: 0.001, validationSplit: 0.2, fineTune: false, fineTuneBlocks: 2, fineTuneEpochs: 0, flip: true });

export class Workspace extends EventTarget {
  /**
   * @param {import('./store.js').Store} store
   * @param {{ id: string, classes?: string[], positive?: string }} preset
   */
  constructor(store, preset) {
    super();
    this.store = store;
    this.preset = preset;
    this.graft = null;
    /** What the engine is doing, for the status line: null when idle. */
    this.activity = null;
    this.state = { id: preset.id, classes: [], model: null, modelInfo: null, report: null, options: this.defaultOptions() };
  }

  /** The training options a new project starts with: the app's, adjusted by the preset. */
  defaultOptions() {
    return { ...DEFAULT_OPTIONS, ...this.preset.options };
  }

  changed() {
    this.dispatchEvent(new Event('change'));
  }

  setActivity(activity) {
    this.activity = activity;
    this.changed();
  }

  /** Loads the saved project (or the preset's empty one), starts the engine and restores it. */
  async start({ backend = 'auto', onProgress } = {}) {
    const saved = await this.store.project(this.preset.id);
    if (saved) this.state = { ...this.state, ...saved, options: { ...this.defaultOptions(), ...saved.options } };
    else this.state.classes = (this.preset.classes ?? []).map((label) => ({ id: newId(), label, imageIds: [] }));
    this.changed();
    this.graft = await Graft.create({ weights: WEIGHTS_URL, backend, onProgress });
    await this.restore();
    this.changed();
  }

  /** Puts the saved embeddings and model back into a fresh engine. */
  async restore() {
    for (const cls of this.state.classes) {
      if (!cls.imageIds.length) continue;
      const records = await this.store.images(cls.imageIds);
      cls.imageIds = records.map((r) => r.id);
      const embeddings = new Float32Array(records.length * 1280);
      records.forEach((r, i) => embeddings.set(r.embedding, i * 1280));
      await this.graft.addEmbeddings(cls.label, embeddings, records.map((r) => r.blob));
    }
    if (this.state.model) {
      try {
        this.state.modelInfo = await this.graft.loadModel(this.state.model);
      } catch (error) {
        this.state.model = null;
        this.state.modelInfo = null;
        throw new Error(`the saved model could not be loaded (${error.message}); train again`);
      }
    }
  }

  async save() {
    const { id, classes, model, modelInfo, report, options } = this.state;
    await this.store.saveProject({ id, classes, model, modelInfo, report, options });
    this.changed();
  }

  classById(id) {
    const cls = this.state.classes.find((c) => c.id === id);
    if (!cls) throw new Error('that class no longer exists');
    return cls;
  }

  /** Checks a label typed by the user; returns it trimmed. */
  checkLabel(label, exceptId) {
    const trimmed = String(label ?? '').trim();
    if (!trimmed) throw new Error('a class needs a name');
    if (trimmed.length > 60) throw new Error('class names are limited to 60 characters');
    if (this.state.classes.some((c) => c.label === trimmed && c.id !== exceptId)) throw new Error(`there is already a class named “${trimmed}”`);
    return trimmed;
  }

  async addClass(label) {
    const cls = { id: newId(), label: this.checkLabel(label ?? this.nextLabel()), imageIds: [] };
    this.state.classes.push(cls);
    await this.save();
    return cls;
  }

  nextLabel() {
    for (let n = this.state.classes.length + 1; ; n++) {
      const label = `Class ${n}`;
      if (!this.state.classes.some((c) => c.label === label)) return label;
    }
  }

  async renameClass(id, label) {
    const cls = this.classById(id);
    const to = this.checkLabel(label, id);
    if (to === cls.label) return;
    if (cls.imageIds.length) await this.graft.renameClass(cls.label, to);
    cls.label = to;
    await this.save();
  }

  async removeClass(id) {
    const cls = this.classById(id);
    if (cls.imageIds.length) await this.graft.removeClass(cls.label);
    this.state.classes = this.state.classes.filter((c) => c.id !== id);
    await this.store.deleteImages(cls.imageIds);
    await this.save();
  }

  /**
   * Embeds and stores images for a class, in chunks so that progress shows and a closed tab
   * keeps what was done. Resolves to `{ added, skipped: [{ name, reason }] }`.
   */
  async addImages(classId, files) {
    const cls = this.classById(classId);
    const list = Array.from(files);
    const skipped = [];
    let added = 0;
    try {
      for (let offset = 0; offset < list.length; offset += ADD_CHUNK) {
        this.setActivity({ label: `Adding images to “${cls.label}”`, done: offset, total: list.length });
        const chunk = list.slice(offset, offset + ADD_CHUNK);
        let result;
        try {
          result = await this.graft.addExamples(cls.label, chunk);
        } catch (error) {
          if (!/no image could be added/.test(error.message)) throw error;
          skipped.push(...chunk.map((file) => ({ name: file.name ?? 'image', reason: error.message.replace(/^no image could be added: /, '') })));
          continue;
        }
        skipped.push(...result.skipped);
        const records = await Promise.all(
          result.addedIndices.map(async (index, row) => ({
            id: newId(),
            projectId: this.state.id,
            classId: cls.id,
            name: chunk[index].name ?? `capture-${Date.now()}.png`,
            blob: chunk[index],
            thumb: await thumbnail(chunk[index]),
            embedding: result.embeddings.slice(row * 1280, (row + 1) * 1280),
          })),
        );
        await this.store.putImages(records);
        cls.imageIds.push(...records.map((r) => r.id));
        added += records.length;
        await this.save();
      }
    } finally {
      this.setActivity(null);
    }
    return { added, skipped };
  }

  /**
   * Adds a folder laid out as the CLI reads it: one sub-folder per class. `files` carry their
   * path (`webkitRelativePath` or the `relativePath` set by a drop); files at the top are ignored.
   */
  async importFolder(files) {
    const groups = groupByClassFolder(files);
    if (!groups.size) throw new Error('no images found in sub-folders: put each class’s images in a folder named after the class');
    const summary = { added: 0, skipped: [], classes: [] };
    for (const [label, group] of groups) {
      let cls = this.state.classes.find((c) => c.label === label);
      if (!cls) cls = await this.addClass(label);
      const { added, skipped } = await this.addImages(cls.id, group);
      summary.added += added;
      summary.skipped.push(...skipped);
      summary.classes.push(label);
    }
    return summary;
  }

  /**
   * Trains a new head and, when asked, fine-tunes the backbone's last blocks;
   * `onEpoch(report, elapsedMs)` after each epoch, `onProgress(step)` after each fine-tuning step.
   */
  async train(options, { onEpoch, onProgress, signal } = {}) {
    const usable = this.state.classes.filter((c) => c.imageIds.length > 0);
    const empty = this.state.classes.filter((c) => c.imageIds.length === 0);
    if (usable.length < 2) throw new Error('add images to at least two classes before training');
    if (empty.length) throw new Error(`the class${empty.length > 1 ? 'es' : ''} ${empty.map((c) => `“${c.label}”`).join(', ')} ha${empty.length > 1 ? 've' : 's'} no images: add some or delete ${empty.length > 1 ? 'them' : 'it'}`);
    this.state.options = { ...options };
    const started = performance.now();
    this.setActivity({ label: 'Training', done: 0, total: options.epochs });
    try {
      const { fineTune, fineTuneBlocks, fineTuneEpochs, flip, ...head } = options;
      const phase2 = fineTune ? { fineTuneBlocks, augment: { flip }, ...(fineTuneEpochs ? { fineTuneEpochs } : {}) } : {};
      const report = await this.graft.train({
        ...head,
        ...phase2,
        signal,
        onEpoch: (epoch) => {
          if (epoch.phase === 'head') this.setActivity({ label: 'Training', done: epoch.epoch, total: options.epochs });
          onEpoch?.(epoch, performance.now() - started);
        },
        onProgress: (step) => {
          this.setActivity({ label: 'Training', done: step.step, total: step.totalSteps });
          onProgress?.(step, performance.now() - started);
        },
      });
      report.seconds = (performance.now() - started) / 1000;
      report.classIds = report.labels.map((label) => this.state.classes.find((c) => c.label === label)?.id ?? null);
      this.state.report = report;
      this.state.model = await this.graft.exportModel();
      this.state.modelInfo = { labels: report.labels };
      await this.save();
      return report;
    } finally {
      this.setActivity(null);
    }
  }

  /** The image record of a held-out example named by the report. */
  validationImageId(report, example) {
    const cls = this.state.classes.find((c) => c.id === report.classIds?.[example.classIndex]);
    return cls?.imageIds[example.exampleIndex] ?? null;
  }

  async predict(image) {
    if (!this.state.model) throw new Error('train a model or import one first');
    return this.graft.predict(image, { topK: Math.min(5, this.state.modelInfo?.labels?.length ?? 5) });
  }

  async exportModel() {
    if (!this.state.model) throw new Error('there is no trained model yet');
    return this.state.model;
  }

  async importModel(bytes) {
    const info = await this.graft.loadModel(bytes);
    this.state.model = new Uint8Array(bytes);
    this.state.modelInfo = info;
    this.state.report = null;
    await this.save();
    return info;
  }

  /** Deletes every stored project, image and model, and empties this workspace. */
  async deleteEverything() {
    await this.store.deleteEverything();
    for (const cls of this.state.classes) if (cls.imageIds.length) await this.graft.removeClass(cls.label).catch(() => {});
    this.state = { id: this.preset.id, classes: [], model: null, modelInfo: null, report: null, options: this.defaultOptions() };
    this.changed();
  }
}

/** Groups files by the folder right above them: `root/CLASS/.../image.jpg` goes to `CLASS`. */
export function groupByClassFolder(files) {
  const groups = new Map();
  for (const file of files) {
    const path = (file.relativePath || file.webkitRelativePath || '').split('/').filter(Boolean);
    if (path.length < 3) continue; // at the top of the folder: not in a class folder
    if (path.some((part) => part.startsWith('.'))) continue; // hidden files and folders
    if (file.type && !file.type.startsWith('image/')) continue;
    const label = path[1].trim();
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(file);
  }
  for (const group of groups.values()) group.sort((a, b) => (a.webkitRelativePath || a.relativePath || a.name).localeCompare(b.webkitRelativePath || b.relativePath || b.name));
  return new Map([...groups].sort(([a], [b]) => a.localeCompare(b)));
}
