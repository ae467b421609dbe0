// What the classifier's Workspace and the detection mode's DetectWorkspace share: the engine's
// life (start, crash and restart, another tab taking the project over), the activity the
// status line shows, notices, storage errors and class names. Each subclass keeps its project
// (`state`) and says how the engine is made (`newEngine`) and filled again (`restore`).

import { filesFromDrop } from './images.js';

const WEIGHTS_URL = new URL('../../weights/efficientnet_lite0.safetensors', import.meta.url).href;
/** Longest class name accepted (and the class name fields' limit). */
export const MAX_LABEL = 60;

const RESTARTING = Object.freeze({ label: 'Restarting the engine', done: 0, total: 0 });
/** An import between two of its steps (reading labels, making a class): still busy. */
const IMPORTING = Object.freeze({ label: 'Adding images', done: 0, total: 0 });

export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export class ProjectWorkspace extends EventTarget {
  /**
   * @param {import('./store.js').Store} store
   * @param {{ id: string, classes?: string[] }} preset
   * @param {string} classWord what a new class is called before it is named ("Class 3")
   */
  constructor(store, preset, classWord) {
    super();
    this.store = store;
    this.preset = preset;
    this.classWord = classWord;
    this.graft = null;
    /** Set when another tab took the project over. */
    this.stopped = false;
    this.restarting = false;
    /** What the engine is doing, for the status line: null when idle. */
    this.activity = null;
    /** Imports running (see `oneImport`). */
    this.imports = 0;
    /** What `Graft.create` was given, to start the engine again after a crash. */
    this.createOptions = null;
    /** The last storage step: the next one waits for it (see `serially`). */
    this.saving = Promise.resolve();
  }

  /**
   * Runs storage steps one at a time, each after the one before has settled, so that each
   * builds its record from the state the one before left (two imports at once would otherwise
   * each write a project without the other's images).
   */
  serially(step) {
    const run = this.saving.then(step);
    this.saving = run.catch(() => {});
    return run;
  }

  changed() {
    this.dispatchEvent(new Event('change'));
  }

  setActivity(activity) {
    // While the engine restarts, that is what it is doing, whatever call ends meanwhile; an
    // import is busy from its first step to its last; a stopped tab stays stopped.
    if (this.stopped) return;
    this.activity = activity ?? (this.restarting ? RESTARTING : this.imports ? IMPORTING : null);
    this.changed();
  }

  /**
   * Runs an import (`work`) as one activity: between its steps the page stays busy, so that a
   * drop meanwhile is refused (see `readDrop`) rather than working from the project as it was
   * before this import. Imports are counted: the page is idle again after the last one ends
   * (an import inside another, or a recorded batch added beside it).
   */
  async oneImport(work) {
    if (this.imports++ === 0) this.setActivity(null);
    try {
      return await work();
    } finally {
      if (--this.imports === 0) this.setActivity(null);
    }
  }

  /**
   * Another tab took the project over: this one lets go of its engine and never writes again
   * (both tabs writing would overwrite each other's work).
   */
  stop() {
    this.graft?.dispose();
    this.graft = null;
    this.setActivity({ label: 'Open in another tab', done: 0, total: 0 });
    this.stopped = true;
  }

  /**
   * The files of a drop (see `filesFromDrop`), read as the workspace's activity so that the page
   * shows the drop was taken. A drop while something else runs (an import, training) is refused:
   * beside it, an import would work from the project as it was before the other one.
   */
  async readDrop(dataTransfer) {
    if (this.activity || !this.graft) {
      const busy = this.activity?.label ?? 'Starting the engine';
      throw new Error(`nothing was added while the app is busy (${busy}); drop again when it is done`);
    }
    this.setActivity({ label: 'Reading the dropped files', done: 0, total: 0 });
    try {
      return await filesFromDrop(dataTransfer);
    } finally {
      this.setActivity(null);
    }
  }

  /** Tells the page something happened that no action of the user's is waiting on. */
  notice(message, kind = 'warning') {
    this.dispatchEvent(new CustomEvent('notice', { detail: { message, kind } }));
  }

  /**
   * Starts the engine (`options` joins the weights and the crash handler) and puts the loaded
   * project into it. Resolves to `{ notices }`: things the user should hear about (strings).
   */
  async startEngine(options, onProgress) {
    this.createOptions = { weights: WEIGHTS_URL, ...options, onCrash: (error) => this.restart(error) };
    const graft = await this.newEngine(onProgress);
    if (this.stopped) {
      graft.dispose(); // another tab took the project over meanwhile
      return { notices: [] };
    }
    // Nothing reaches the engine before it holds the project (a failed model load still
    // leaves it usable).
    try {
      return { notices: await this.restore(graft) };
    } finally {
      this.graft = graft;
      this.changed();
    }
  }

  /** The engine, or a coded error while there is none to use (restarting, or let go). */
  engine() {
    if (this.graft) return this.graft;
    const error = new Error(this.stopped ? 'this project is open in another tab: reload this one to use it here' : 'the engine is restarting: try again in a moment');
    error.code = this.stopped ? 'DISPOSED' : 'RESTARTING';
    throw error;
  }

  /**
   * The engine died (a bug, or the browser took its memory): start a new one and put the
   * project back into it. The call that was running fails; the page says in one line what
   * happened, ending with `restoredNote(notices)`.
   */
  async restart(error) {
    if (!this.graft || this.restarting || this.stopped) return; // starting, restarting, or let go
    this.restarting = true;
    this.graft = null;
    this.setActivity(RESTARTING);
    let graft = null;
    try {
      graft = await this.newEngine();
      const notices = this.stopped ? [] : await this.restore(graft);
      if (this.stopped) return;
      this.notice(`The engine stopped (${error.message}) and was restarted; ${this.restoredNote(notices)}`);
    } catch (failure) {
      if (this.stopped) return;
      this.notice(
        graft
          ? `The engine stopped (${error.message}) and was restarted, but ${failure.message}.`
          : `The engine stopped (${error.message}) and could not be restarted (${failure.message}): reload the page; your project is kept in this browser’s storage.`,
        'error',
      );
    } finally {
      if (this.stopped) graft?.dispose();
      else this.graft = graft;
      this.restarting = false;
      this.setActivity(null);
    }
  }

  /**
   * A storage failure as the user needs it: a full disk names the numbers (what this site uses
   * of what the browser allows it) and then `advice`, anything else the browser's own error.
   */
  async storageError(error, what, advice = 'Free some space and try again.') {
    if (error?.name !== 'QuotaExceededError') {
      return new Error(`${what}: the browser’s storage refused it (${[error?.name, error?.message].filter(Boolean).join(': ') || 'no reason given'})`);
    }
    const usage = await this.store.usage().catch(() => null);
    const megabytes = (bytes) => `${Math.round(bytes / 1e6)} MB`;
    const numbers = usage?.quota ? ` (${megabytes(usage.usage)} used of the ${megabytes(usage.quota)} this browser allows the site)` : '';
    return new Error(`${what}: this browser’s storage is full${numbers}. ${advice}`);
  }

  classById(id) {
    const cls = this.state.classes.find((c) => c.id === id);
    if (!cls) throw new Error('that class no longer exists');
    return cls;
  }

  /** Checks a label typed by the user against `classes`; returns it trimmed. */
  checkLabel(label, exceptId, classes = this.state.classes) {
    const trimmed = String(label ?? '').trim();
    if (!trimmed) throw new Error('a class needs a name');
    if (trimmed.length > MAX_LABEL) throw new Error(`the class name “${trimmed}” is too long: ${trimmed.length} characters, at most ${MAX_LABEL}`);
    if (classes.some((c) => c.label === trimmed && c.id !== exceptId)) throw new Error(`there is already a class named “${trimmed}”`);
    return trimmed;
  }

  /** The first free default name for a new class. */
  nextLabel() {
    for (let n = this.state.classes.length + 1; ; n++) {
      const label = `${this.classWord} ${n}`;
      if (!this.state.classes.some((c) => c.label === label)) return label;
    }
  }
}
