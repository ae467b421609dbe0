// One tab per project: two tabs saving the same project would overwrite each other's work. A
// Web Lock names the project while a tab uses it; a second tab is told the project is open
// elsewhere and may take it over: it steals the lock, which tells the first tab to stop. A
// write the first tab has in flight commits before the second tab's first read (IndexedDB
// orders overlapping transactions), and a stopped tab starts no other.

/**
 * Resolves once this tab holds the project. When another tab holds it, `onBusy()` is awaited
 * first (it resolves when the user chooses to use the project here); `onTakenOver()` is called
 * if a later tab takes it from this one.
 */
export async function holdProject(projectId, { onBusy, onTakenOver }) {
  if (!navigator.locks) return; // no other tab can be told
  const name = `graft-project:${projectId}`;
  const request = (options) =>
    new Promise((resolve) => {
      navigator.locks
        .request(name, options, (lock) => {
          resolve(Boolean(lock));
          // Held for the page's life, unless stolen.
          return lock ? new Promise(() => {}) : undefined;
        })
        .catch((error) => {
          if (error.name === 'AbortError') onTakenOver();
        });
    });
  if (await request({ ifAvailable: true })) return;
  await onBusy();
  await request({ steal: true });
}
