// Persistence in IndexedDB: the project (classes, trained model, last report) and every image
// with its thumbnail and embedding, so that a reload or a closed tab loses nothing.
// Nothing here ever leaves the browser.

const DB_NAME = 'graft';
const DB_VERSION = 1;

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

/** Opens the database; `projects` holds one record per project, `images` one per image. */
export async function openStore() {
  if (!globalThis.indexedDB) throw new Error('this browser has no IndexedDB: your work cannot be kept across reloads');
  const open = indexedDB.open(DB_NAME, DB_VERSION);
  open.onupgradeneeded = () => {
    const db = open.result;
    db.createObjectStore('projects', { keyPath: 'id' });
    const images = db.createObjectStore('images', { keyPath: 'id' });
    images.createIndex('project', 'projectId');
  };
  const db = await request(open);
  return new Store(db);
}

export class Store {
  constructor(db) {
    this.db = db;
  }

  async project(id) {
    const tx = this.db.transaction('projects');
    return (await request(tx.objectStore('projects').get(id))) ?? null;
  }

  async saveProject(project) {
    const tx = this.db.transaction('projects', 'readwrite');
    tx.objectStore('projects').put(project);
    await done(tx);
  }

  /**
   * Stores image records `{ id, projectId, classId, name, blob, thumb, embedding, hash }` with
   * the project that lists them, in one transaction: both are saved or neither (a reload or a
   * full disk mid-import leaves no image that no class lists). `id` is also the example's id in
   * the engine, `hash` its content hash (records saved by earlier versions have none; the engine
   * then hashes the blob again on restore).
   */
  async saveImages(project, records) {
    const tx = this.db.transaction(['projects', 'images'], 'readwrite');
    const images = tx.objectStore('images');
    for (const record of records) images.put(record);
    tx.objectStore('projects').put(project);
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
