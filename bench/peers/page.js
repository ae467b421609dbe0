// The throughput page: browser.mjs loads the X-rays once, starts the engines, then calls
// `peers.run` engine by engine, round by round; the timing happens here, not over CDP.
import { createEngine } from './engines.js';

const SIDE = 256;
const engines = {};
let images = [];

/** A 256 x 256 RGBA square: the short side resized to 256, the centre cropped (Graft's own first step). */
async function decode(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const bitmap = await createImageBitmap(await response.blob());
  const short = Math.min(bitmap.width, bitmap.height);
  const canvas = new OffscreenCanvas(SIDE, SIDE);
  const context = canvas.getContext('2d');
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, (bitmap.width - short) / 2, (bitmap.height - short) / 2, short, short, 0, 0, SIDE, SIDE);
  bitmap.close();
  return context.getImageData(0, 0, SIDE, SIDE);
}

window.peers = {
  async loadImages(urls) {
    images = await Promise.all(urls.map(decode));
    return images.length;
  },

  /** Starts engine `name` as `key`, and warms it up on one batch; resolves to its details. */
  async start(key, name, options, batch) {
    engines[key] = await createEngine(name, options);
    await engines[key].embed(images.slice(0, batch));
    return engines[key].info ?? null;
  },

  /** Embeds every image in batches; seconds taken, and the features when `keep`. */
  async run(key, batch, keep) {
    const engine = engines[key];
    const parts = [];
    const started = performance.now();
    for (let i = 0; i < images.length; i += batch) parts.push(await engine.embed(images.slice(i, i + batch)));
    const seconds = (performance.now() - started) / 1000;
    return { seconds, features: keep ? parts.flatMap((part) => Array.from(part)) : null };
  },
};
document.getElementById('status').textContent = 'ready';
