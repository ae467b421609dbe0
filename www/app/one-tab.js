// One tab per project: two tabs saving the same project would overwrite each other's work. A
// Web Lock names the project while a tab uses it; a second tab is told the project is open
// elsewhere and may take it over, which stops the first tab (it says so) before the second
// one reads anything.

/**
 * Resolves once this tab holds the project. When another tab holds it, `onBusy()` is awaited
 * first (it resolves when the user chooses to use the project here); `onTakenOver()` is called
 * if a later tab takes it from this one.
 */
export async function holdProject(projectId, { onBusy, onTakenOver }) {
  if (!navigator.locks || !globalThis.BroadcastChannel) return; // no other tab can be told
  const name = `graft-project:${projectId}`;
  const channel = new BroadcastChannel(name);
  const hold = () =>
    new Promise((release) => {
      channel.onmessage = ({ data }) => {
        if (data !== 'take-over') return;
        onTakenOver();
        release();
      };
    });
  const free = await new Promise((resolve) => {
    navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      resolve(Boolean(lock));
      return lock ? hold() : undefined;
    });
  });
  if (free) return;
  await onBusy();
  await new Promise((resolve) => {
    navigator.locks.request(name, () => {
      resolve();
      return hold();
    });
    channel.postMessage('take-over');
  });
}
