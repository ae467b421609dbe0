// The workspace: one project's classes, images, trained model and last report, kept in step
// between the Graft engine (which holds the examples' embeddings and the model) and IndexedDB
// (which keeps everything across reloads). An image's IndexedDB id is also its example id in
// the engine, so both name it the same way. Components read `workspace.state` and listen for
// 'change'.

import { Graft } from '../../pkg/graft.js';
import { newId } from './store.js';
import { thumbnail } from './images.js';
import { MAX_LABEL, ProjectWorkspace, plural } from './project-workspace.js';

export { MAX_LABEL };

/** Images handed to the engine per call: progress and storage advance in these steps. */
const ADD_CHUNK = 16;

/**
 * The app's training options. The engine's defaults are the app's: only what differs from
 * them is sent (see `engineOptions`). `fineTuneEpochs` 0 lets the engine pick.
 */
export const DEFAULT_OPTIONS = Object.freeze({ validationSplit: 0.2, fineTune: false, fineTuneBlocks: 2, fineTuneEpochs: 0, flip: false });

/** The engine's `train()` options for the app's: only what differs from the engine's defaults. */
export function engineOptions(options) {
  const out = {};
  if (options.validationSplit !== DEFAULT_OPTIONS.validationSplit) out.validationSplit = options.validationSplit;
  if (options.fineTune) {
    out.fineTuneBlocks = options.fineTuneBlocks;
    if (options.fineTuneEpochs > 0) out.epochs = options.fineTuneEpochs;
    if (options.flip) out.augment = { flip: true };
  }
  return out;
}

/**
 * Whether a saved report has the shape this version reads (`train()`'s report with example
 * ids); reports saved by earlier versions of the app are treated as absent.
 */
export function isCurrentReport(report) {
  return Boolean(
    report &&
      Array.isArray(report.labels) &&
      report.head &&
      typeof report.head.l2 === 'number' &&
      Array.isArray(report.head.search) &&
      Array.isArray(report.validationExamples) &&
      report.validationExamples.every((e) => typeof e.id === 'string' && Number.isInteger(e.label) && Number.isInteger(e.predicted)),
  );
}

export class Workspace extends ProjectWorkspace {
  /**
   * @param {import('./store.js').Store} store
   * @param {{ id: string, classes?: string[], positive?: string, options?: object }} preset
   */
  constructor(store, preset) {
    super(store, preset, 'Class');
    this.state = { id: preset.id, classes: [], model: null, modelInfo: null, report: null, options: this.defaultOptions() };
  }

  /** The training options a new project starts with: the app's, adjusted by the preset. */
  defaultOptions() {
    return { ...DEFAULT_OPTIONS, ...this.preset.options };
  }

  /** Saved options, keeping only the ones this version has (earlier ones had head epochs). */
  knownOptions(saved) {
    const options = this.defaultOptions();
    for (const key of Object.keys(DEFAULT_OPTIONS)) {
      if (saved && typeof saved[key] === typeof DEFAULT_OPTIONS[key]) options[key] = saved[key];
    }
    return options;
  }

  /**
   * Loads the saved project (or the preset's empty one), starts the engine and restores it.
   * Resolves to `{ notices }`: things the user should hear about (strings).
   */
  async start({ backend = 'auto', onProgress } = {}) {
    const saved = await this.store.project(this.preset.id);
    if (saved) {
      this.state = {
        ...this.state,
        ...saved,
        report: isCurrentReport(saved.report) ? saved.report : null,
        options: this.knownOptions(saved.options),
      };
    } else {
      this.state.classes = (this.preset.classes ?? []).map((label) => ({ id: newId(), label, imageIds: [] }));
    }
    this.changed();
    return this.startEngine({ backend }, onProgress);
  }

  newEngine(onProgress) {
    return Graft.create({ ...this.createOptions, onProgress });
  }

  /** The end of the restart notice: the project came back from storage. */
  restoredNote(notices) {
    return `your project was restored from this browser’s storage.${notices.length ? ` ${notices.join('; ')}.` : ''}`;
  }

  /** Puts the saved examples (embeddings, images, hashes) and model back into a fresh engine. */
  async restore(graft) {
    const notices = [];
    // Images no class lists (left by versions that saved them apart from the project) would
    // only come back as duplicates when their folder is imported again.
    const listed = new Set(this.state.classes.flatMap((c) => c.imageIds));
    const orphans = (await this.store.imageIds(this.state.id)).filter((id) => !listed.has(id));
    if (orphans.length) await this.store.deleteImages(orphans);
    let duplicates = 0;
    for (const cls of this.state.classes) {
      if (!cls.imageIds.length) continue;
      const records = await this.store.images(cls.imageIds);
      const kept = await this.restoreRecords(graft, cls.label, records);
      duplicates += records.length - kept.length;
      const gone = records.filter((r) => !kept.includes(r)).map((r) => r.id);
      if (gone.length) await this.store.deleteImages(gone);
      cls.imageIds = kept.map((r) => r.id);
    }
    if (duplicates) {
      notices.push(`${plural(duplicates, 'image was', 'images were')} stored twice in this project; the extra ${duplicates === 1 ? 'copy was' : 'copies were'} removed`);
      await this.save();
    }
    if (this.state.model) {
      try {
        this.state.modelInfo = await graft.loadModel(this.state.model);
      } catch (error) {
        this.state.model = null;
        this.state.modelInfo = null;
        throw new Error(`the saved model could not be loaded (${error.message}); train again`);
      }
    }
    return notices;
  }

  /**
   * Adds stored image records to the engine as the class `label`; resolves to the records it
   * holds. Projects saved by earlier versions may hold the same image twice, which the engine
   * refuses: those are then added one by one and the repeats left out.
   */
  async restoreRecords(graft, label, records) {
    if (!records.length) return [];
    const add = (group) => {
      const embeddings = new Float32Array(group.length * 1280);
      group.forEach((r, i) => embeddings.set(r.embedding, i * 1280));
      const hashes = group.every((r) => typeof r.hash === 'string' && r.hash) ? group.map((r) => r.hash) : undefined;
      return graft.addEmbeddings(label, embeddings, { ids: group.map((r) => r.id), hashes, images: group.map((r) => r.blob) });
    };
    try {
      await add(records);
      return records;
    } catch (error) {
      if (error.code !== 'ALREADY_EXISTS') throw error;
    }
    const kept = [];
    for (const record of records) {
      try {
        await add([record]);
        kept.push(record);
      } catch (error) {
        if (error.code !== 'ALREADY_EXISTS') throw error;
      }
    }
    return kept;
  }

  /** The project as stored, from the state and `changes`. */
  record(changes = {}) {
    if (this.stopped) this.engine(); // throws: this tab let the project go
    const { id, classes, model, modelInfo, report, options } = { ...this.state, ...changes };
    return { id, classes, model, modelInfo, report, options };
  }

  /**
   * Stores the project with `changes` (then made to the state: the page shows only what was
   * stored); a failure says `failure` (see `storageError`).
   */
  save({ failure = 'the project could not be saved', changedNothing = true, changes = {} } = {}) {
    return this.serially(async () => {
      const project = this.record(changes);
      try {
        await this.store.saveProject(project);
        Object.assign(this.state, changes);
      } catch (error) {
        throw await this.storageError(error, failure, { changedNothing });
      } finally {
        this.changed();
      }
    });
  }

  /** As the base's, saying whether anything else was changed. */
  storageError(error, what, { changedNothing = true } = {}) {
    return super.storageError(error, what, `Free some space (remove images, or another site’s data)${changedNothing ? ' and try again; nothing else was changed' : ''}.`);
  }

  /** Images stored in the project, for the storage line. */
  imageCount() {
    return this.state.classes.reduce((n, c) => n + c.imageIds.length, 0);
  }

  /** Whether the engine holds a class with this label. */
  engineHas(label) {
    return Boolean(this.graft?.classes().some((c) => c.label === label));
  }

  /** A new class, stored; a failure says `failure`. */
  async addClass(label, failure = undefined) {
    const cls = { id: newId(), label: this.checkLabel(label ?? this.nextLabel()), imageIds: [] };
    await this.save({ changes: { classes: [...this.state.classes, cls] }, failure });
    return cls;
  }

  async renameClass(id, label) {
    const cls = this.classById(id);
    const to = this.checkLabel(label, id);
    if (to === cls.label) return;
    if (this.engineHas(cls.label)) await this.engine().renameClass(cls.label, to);
    cls.label = to;
    await this.save();
  }

  async removeClass(id) {
    const cls = this.classById(id);
    if (this.engineHas(cls.label)) await this.engine().removeClass(cls.label);
    this.state.classes = this.state.classes.filter((c) => c.id !== id);
    await this.store.deleteImages(cls.imageIds);
    await this.save();
  }

  /** Removes one image (a mislabelled one, say) from the engine, storage and its class. */
  async removeImage(classId, imageId) {
    const cls = this.classById(classId);
    if (!cls.imageIds.includes(imageId)) throw new Error('that image is no longer in the class');
    try {
      await this.engine().removeExamples([imageId]);
    } catch (error) {
      // Not in the engine (it was never restored): there is nothing to remove there.
      if (error.code !== 'NOT_FOUND') throw error;
    }
    cls.imageIds = cls.imageIds.filter((id) => id !== imageId);
    // An emptied class leaves the engine too, so that the engine holds exactly the classes
    // with images (a later rename cannot clash with an empty leftover).
    if (!cls.imageIds.length && this.engineHas(cls.label)) await this.engine().removeClass(cls.label);
    await this.store.deleteImages([imageId]);
    await this.save();
  }

  /**
   * Embeds and stores images for a class, in chunks so that progress shows and a closed tab
   * keeps what was done. Resolves to `{ added, skipped: [{ name, code, reason }] }`; images
   * already in the project come back skipped with the code `ALREADY_EXISTS`.
   */
  addImages(classId, files) {
    return this.oneImport(async () => {
      const cls = this.classById(classId);
      const graft = this.engine(); // a restart mid-import fails this one's calls: the import stops
      const list = Array.from(files);
      const skipped = [];
      let added = 0;
      for (let offset = 0; offset < list.length; offset += ADD_CHUNK) {
        this.setActivity({ label: `Adding images to “${cls.label}”`, done: offset, total: list.length });
        const chunk = list.slice(offset, offset + ADD_CHUNK);
        const ids = chunk.map(() => newId());
        let result;
        try {
          result = await graft.addExamples(cls.label, chunk, { ids });
        } catch (error) {
          // None of this chunk could be added: each one's reason is in `skipped`.
          if (!Array.isArray(error.skipped)) throw error;
          skipped.push(...error.skipped);
          continue;
        }
        skipped.push(...result.skipped);
        const records = await Promise.all(
          result.added.map(async ({ index, id, hash }, row) => ({
            id,
            hash,
            projectId: this.state.id,
            classId: cls.id,
            name: chunk[index].name ?? `capture-${Date.now()}.png`,
            blob: chunk[index],
            thumb: await thumbnail(chunk[index]),
            embedding: result.embeddings.slice(row * 1280, (row + 1) * 1280),
          })),
        );
        const saved = records.map((r) => r.id);
        await this.serially(async () => {
          const classes = this.state.classes.map((c) => (c === cls ? { ...c, imageIds: [...c.imageIds, ...saved] } : c));
          try {
            await this.store.saveImages(this.record({ classes }), records);
          } catch (error) {
            // Storage and the engine change together or not at all: the engine lets go of them.
            await graft.removeExamples(saved).catch(() => {});
            const missed = list.length - offset;
            throw await this.storageError(error, `${plural(missed, 'image')} could not be added to “${cls.label}” (${plural(added, 'image was', 'images were')} saved before)`);
          }
          cls.imageIds.push(...saved);
        });
        added += records.length;
        this.changed();
      }
      return { added, skipped };
    });
  }

  /**
   * Adds a folder laid out as the CLI reads it: one sub-folder per class. `files` carry their
   * path (`webkitRelativePath` or the `relativePath` set by a drop); files at the top are ignored.
   */
  importFolder(files) {
    return this.oneImport(async () => {
      const groups = groupByClassFolder(files);
      if (!groups.size) throw new Error('no images found in sub-folders: put each class’s images in a folder named after the class');
      // Every folder name must work as a class name before anything is imported.
      const tooLong = [...groups.keys()].filter((label) => label.length > MAX_LABEL);
      if (tooLong.length) {
        throw new Error(`class names are limited to ${MAX_LABEL} characters: rename the folder${tooLong.length > 1 ? 's' : ''} ${tooLong.map((l) => `“${l}” (${l.length})`).join(', ')} and import again`);
      }
      const summary = { added: 0, skipped: [], classes: [] };
      for (const [label, group] of groups) {
        let cls = this.state.classes.find((c) => c.label === label);
        // A full disk may stop the import here too: the message then says what it stops.
        if (!cls) cls = await this.addClass(label, `${plural(group.length, 'image')} could not be added to “${label}” (${plural(summary.added, 'image was', 'images were')} saved before)`);
        const { added, skipped } = await this.addImages(cls.id, group);
        summary.added += added;
        summary.skipped.push(...skipped);
        summary.classes.push(label);
      }
      return summary;
    });
  }

  /**
   * Trains: the head is solved (its L2 penalty picked by cross-validation) and, when asked, the
   * backbone's last blocks fine-tuned. `onProgress(event, elapsedMs)` gets every engine event
   * (`status`: 'note', 'search', 'head', 'baseline', 'step', 'epoch').
   */
  async train(options, { onProgress, signal } = {}) {
    const usable = this.state.classes.filter((c) => c.imageIds.length > 0);
    const empty = this.state.classes.filter((c) => c.imageIds.length === 0);
    if (usable.length < 2) throw new Error('add images to at least two classes before training');
    if (empty.length) throw new Error(`the class${empty.length > 1 ? 'es' : ''} ${empty.map((c) => `“${c.label}”`).join(', ')} ha${empty.length > 1 ? 've' : 's'} no images: add some or delete ${empty.length > 1 ? 'them' : 'it'}`);
    const graft = this.engine();
    this.state.options = { ...options };
    const started = performance.now();
    this.setActivity({ label: 'Training', done: 0, total: 0 });
    try {
      const report = await graft.train({
        ...engineOptions(options),
        signal,
        onProgress: (event) => {
          if (event.status === 'search') this.setActivity({ label: 'Training', done: event.index, total: event.of });
          else if (event.status === 'step') this.setActivity({ label: 'Training', done: event.step, total: event.totalSteps });
          onProgress?.(event, performance.now() - started);
        },
      });
      Object.assign(this.state, { report, model: await graft.exportModel(), modelInfo: { labels: report.labels } });
      // If storage refuses it, the model still works in this tab and can be downloaded; the
      // next save that succeeds stores it. That is what the message says.
      await this.save({
        failure: 'the trained model works here but is not saved in this browser yet (download it, or free space and it is saved with your next change)',
        changedNothing: false,
      });
      return report;
    } finally {
      this.setActivity(null);
    }
  }

  async predict(image) {
    if (!this.state.model) throw new Error('train a model or import one first');
    return this.engine().predict(image, { topK: Math.min(5, this.state.modelInfo?.labels?.length ?? 5) });
  }

  /** The top classes and the heat map of the predicted class, or of `label`; 14x14 if `fine`. */
  async explain(image, { label, fine = false } = {}) {
    if (!this.state.model) throw new Error('train a model or import one first');
    return this.engine().explain(image, { label, fine, topK: Math.min(5, this.state.modelInfo?.labels?.length ?? 5) });
  }

  async exportModel() {
    if (!this.state.model) throw new Error('there is no trained model yet');
    return this.state.model;
  }

  /**
   * Loads a model file into the engine and keeps it. If storage refuses it, the project keeps
   * its previous model (loaded back into the engine; without one, the app predicts nothing).
   */
  async importModel(bytes) {
    const graft = this.engine();
    const info = await graft.loadModel(bytes);
    const changes = { model: new Uint8Array(bytes), modelInfo: info, report: null };
    await this.serially(async () => {
      try {
        await this.store.saveProject(this.record(changes));
      } catch (error) {
        if (this.state.model) await graft.loadModel(this.state.model).catch(() => {});
        throw await this.storageError(error, 'the imported model could not be kept');
      }
      Object.assign(this.state, changes);
      this.changed();
    });
    return info;
  }

  /** Deletes every stored project, image and model, and empties this workspace. */
  async deleteEverything() {
    await this.saving; // a change being saved is not written back after
    await this.store.deleteEverything();
    for (const { label } of this.graft?.classes() ?? []) await this.graft.removeClass(label).catch(() => {});
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
    if (!label) continue;
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(file);
  }
  for (const group of groups.values()) group.sort((a, b) => (a.webkitRelativePath || a.relativePath || a.name).localeCompare(b.webkitRelativePath || b.relativePath || b.name));
  return new Map([...groups].sort(([a], [b]) => a.localeCompare(b)));
}
