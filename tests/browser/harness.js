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

/**
 * PNG copies of images, as Blobs and as base64 for the CLI: both sides decode PNG exactly, so
 * they see the same pixels (JPEG decoders round differently).
 */
window.pngCopies = async (images) => {
  const files = [];
  const base64 = [];
  for (const image of images) {
    const bitmap = await createImageBitmap(image);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    const png = await canvas.convertToBlob({ type: 'image/png' });
    files.push(png);
    base64.push(btoa(Array.from(new Uint8Array(await png.arrayBuffer()), (b) => String.fromCharCode(b)).join('')));
  }
  return { files, base64 };
};

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
