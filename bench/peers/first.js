// Starts one engine in a fresh page and embeds one 224 x 224 image; `window.first` then holds
// the seconds since navigation started (performance.now() counts from the time origin).
import { createEngine } from './engines.js';

const params = new URLSearchParams(location.search);
const pixels = new Uint8ClampedArray(224 * 224 * 4);
for (let i = 0; i < pixels.length; i++) pixels[i] = i % 4 === 3 ? 255 : (i * 7) % 251; // any opaque image
try {
  const engine = await createEngine(params.get('engine'), { workers: Number(params.get('workers') ?? 1) });
  const features = await engine.embed([new ImageData(pixels, 224, 224)]);
  if (features.length !== 1280) throw new Error(`expected 1280 features, got ${features.length}`);
  window.first = { seconds: performance.now() / 1000 };
} catch (error) {
  window.first = { error: String(error?.stack ?? error) };
}
