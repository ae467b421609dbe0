// Persistence in IndexedDB: the project (classes, trained model, last report) and every image
// with its thumbnail and embedding, so that a reload or a closed tab loses nothing.
// Nothing here ever leaves the browser.

const DB_NAME = 'graft';
/** 1: projects and images; 2: models in chunks of their own. */
const DB_VERSION = 2;
/**
 * A model is stored in pieces of this size: a browser may refuse one value of hundreds of
 * megabytes (a big model's save once failed that way) and would rewrite it whole.
 */
const MODEL_CHUNK_BYTES = 4 << 20;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('the storage transaction was aborted'));
  });
}

/**
 * Opens the database; `projects` holds one record per project (its model in `modelChunks`),
 * `images` one per image.
 */
export async function openStore() {
  if (!globalThis.indexedDB) throw new Error('this browser has no IndexedDB: your work cannot be kept across reloads');
  const open = indexedDB.open(DB_NAME, DB_VERSION);
  open.onupgradeneeded = ({ oldVersion }) => {
    const db = open.result;
    if (oldVersion < 1) {
      db.createObjectStore('projects', { keyPath: 'id' });
      const images = db.createObjectStore('images', { keyPath: 'id' });
      images.createIndex('project', 'projectId');
    }
    // Version 1 kept the model inside the project record; it moves to chunks on its next save.
    if (oldVersion < 2) db.createObjectStore('modelChunks', { keyPath: ['projectId', 'index'] });
  };
  const db = await request(open);
  return new Store(db);
}

/** The key range of a project's model chunks from `first` on. */
const chunksFrom = (projectId, first = 0) => IDBKeyRange.bound([projectId, first], [projectId, Number.MAX_SAFE_INTEGER]);

export class Store {
  constructor(db) {
    this.db = db;
    /** Per project, the model bytes its chunks hold now: saving the same model writes nothing. */
    this.storedModels = new Map();
  }

  /** The project with its model (`model`: Uint8Array or null), or null. */
  async project(id) {
    const tx = this.db.transaction(['projects', 'modelChunks']);
    const record = await request(tx.objectStore('projects').get(id));
    if (!record) return null;
    const { modelChunks, ...project } = record;
    if (modelChunks) {
      const chunks = await request(tx.objectStore('modelChunks').getAll(chunksFrom(id)));
      const model = new Uint8Array(chunks.reduce((n, c) => n + c.bytes.length, 0));
      let offset = 0;
      for (const { bytes } of chunks) {
        model.set(bytes, offset);
        offset += bytes.length;
      }
      project.model = model;
      this.storedModels.set(id, model);
    }
    return project;
  }

  async saveProject(project) {
    const tx = this.db.transaction(['projects', 'modelChunks'], 'readwrite');
    this.putProject(tx, project);
    await done(tx);
  }

  /** Writes `project` in `tx`: its record, and its model's chunks when the model changed. */
  putProject(tx, { model, ...project }) {
    const previous = this.storedModels.get(project.id);
    const chunks = model ? Math.ceil(model.length / MODEL_CHUNK_BYTES) : 0;
    tx.objectStore('projects').put({ ...project, model: null, modelChunks: chunks });
    if (model === previous) return;
    const store = tx.objectStore('modelChunks');
    for (let index = 0; index < chunks; index++) {
      store.put({ projectId: project.id, index, bytes: model.slice(index * MODEL_CHUNK_BYTES, (index + 1) * MODEL_CHUNK_BYTES) });
    }
    store.delete(chunksFrom(project.id, chunks));
    tx.addEventListener('complete', () => this.storedModels.set(project.id, model));
  }

  /**
   * Stores image records `{ id, projectId, classId, name, blob, thumb, embedding, hash }` with
   * the project that lists them, in one transaction: both are saved or neither (a reload or a
   * full disk mid-import leaves no image that no class lists). `id` is also the example's id in
   * the engine, `hash` its content hash (records saved by earlier versions have none; the engine
   * then hashes the blob again on restore).
   */
  async saveImages(project, records) {
    const tx = this.db.transaction(['projects', 'images', 'modelChunks'], 'readwrite');
    try {
      const images = tx.objectStore('images');
      for (const record of records) images.put(record);
      this.putProject(tx, project);
    } catch (error) {
      tx.abort(); // a record that cannot be stored (put throws at once): none of them is
      throw error;
    }
    await done(tx);
  }

  /** Ids of the project's stored images (listed by a class or not). */
  async imageIds(projectId) {
    const tx = this.db.transaction('images');
    return request(tx.objectStore('images').index('project').getAllKeys(projectId));
  }

  async image(id) {
    const tx = this.db.transaction('images');
    return (await request(tx.objectStore('images').get(id))) ?? null;
  }

  /** The records with these ids, in the same order (missing ones are skipped). */
  async images(ids) {
    const tx = this.db.transaction('images');
    const store = tx.objectStore('images');
    const records = await Promise.all(ids.map((id) => request(store.get(id))));
    return records.filter(Boolean);
  }

  async deleteImages(ids) {
    const tx = this.db.transaction('images', 'readwrite');
    const store = tx.objectStore('images');
    for (const id of ids) store.delete(id);
    await done(tx);
  }

  /** Bytes used by this origin and the quota, when the browser tells. */
  async usage() {
    return navigator.storage?.estimate ? navigator.storage.estimate() : null;
  }

  /** Deletes the whole database: every project, image and model. */
  async deleteEverything() {
    this.db.close();
    this.storedModels.clear();
    const del = indexedDB.deleteDatabase(DB_NAME);
    await new Promise((resolve, reject) => {
      del.onsuccess = resolve;
      del.onerror = () => reject(del.error);
      del.onblocked = resolve;
    });
    this.db = (await openStore()).db;
  }
}

/** A short random id for classes and images. */
export function newId() {
  return crypto.randomUUID();
}
