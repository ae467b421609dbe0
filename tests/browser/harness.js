// Exposes the package and a few helpers to the Playwright tests, exactly as a page would use it.
import { Graft, drawExplanation } from '../../pkg/graft.js';

window.Graft = Graft;
window.drawExplanation = drawExplanation;

/** Fetches test images from the server as Files (same origin, like a user's file picker). */
window.fetchImages = async (paths) =>
  Promise.all(
    paths.map(async (path) => {
      const response = await fetch(path);
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
      return new File([await response.blob()], path.split('/').pop(), { type: response.headers.get('content-type') });
    }),
  );

/** Counts animation frames while `work` runs: a frozen main thread stops the count. */
window.countFrames = async (work) => {
  let frames = 0;
  let running = true;
  const tick = () => {
    frames++;
    if (running) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const started = performance.now();
  const result = await work();
  running = false;
  return { result, frames, seconds: (performance.now() - started) / 1000 };
};

document.getElementById('status').textContent = 'ready';
