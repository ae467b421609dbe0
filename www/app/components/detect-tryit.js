// Try it: drop or choose an image, or start the webcam, and see the objects the detector finds
// drawn over it with their class and score; a slider sets the lowest score shown (the engine is
// asked once, down to the slider's minimum, so moving it redraws at once).

import { h, render, percent } from '../dom.js';
import { wholeFrame } from '../images.js';
import { liveWebcam, takeImageFiles, tryPanel } from './try-input.js';
import { classColour } from './boxes-editor.js';

const LOWEST_SCORE = 0.05;

/**
 * Draws `source` on `canvas` at its own size with `found`'s boxes, labels and scores, each in
 * the colour of its class in `labels` (the project's order, as in the editor).
 */
function drawFound(canvas, source, found, labels) {
  const width = source.naturalWidth ?? source.videoWidth ?? source.width;
  const height = source.naturalHeight ?? source.videoHeight ?? source.height;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d');
  context.drawImage(source, 0, 0, width, height);
  const line = Math.max(2, Math.round(Math.min(width, height) / 200));
  context.font = `600 ${Math.max(12, line * 6)}px system-ui, sans-serif`;
  context.textBaseline = 'top';
  for (const { label, score, box: [x0, y0, x1, y1] } of found) {
    const colour = classColour(labels.includes(label) ? labels.indexOf(label) : labels.length);
    context.strokeStyle = colour;
    context.lineWidth = line;
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = `${label} ${percent(score, 0)}`;
    const textHeight = line * 6 + 4;
    const top = y0 >= textHeight ? y0 - textHeight : y0;
    context.fillStyle = colour;
    context.fillRect(x0, top, context.measureText(text).width + 8, textHeight);
    context.fillStyle = '#ffffff';
    context.fillText(text, x0 + 4, top + 2);
  }
}

export function detectTryItPanel(workspace, notify) {
  const preview = h('div', { class: 'preview' }, h('p', { class: 'hint' }, 'Drop an image here or choose one.'));
  const canvas = h('canvas', { class: 'explained', id: 'found-canvas', role: 'img', 'aria-label': 'The image with the objects found' });
  const list = h('ol', { class: 'found-list', id: 'found', 'aria-live': 'polite', 'aria-label': 'Objects found' });
  const fileInput = h('input', { type: 'file', accept: 'image/*', id: 'try-input', hidden: true, 'aria-label': 'Choose an image to search for objects' });
  const choose = h('button', { type: 'button', onclick: () => fileInput.click() }, 'Choose an image…');
  const minScore = h('input', { type: 'range', id: 'min-score', min: LOWEST_SCORE * 100, max: 95, value: 25, 'aria-label': 'Lowest score shown' });
  const minScoreText = h('output', { for: 'min-score', id: 'min-score-value' }, '25%');
  /** The image shown and everything found in it down to LOWEST_SCORE. */
  let shown = null;

  function redraw() {
    if (!shown) return;
    const threshold = Number(minScore.value) / 100;
    const found = shown.found.filter((d) => d.score >= threshold);
    const labels = workspace.state.classes.map((c) => c.label);
    drawFound(canvas, shown.source, found, labels);
    render(list, found.length ? found.map(({ label, score, box }) => h('li', {}, h('strong', {}, label), ` ${percent(score)} at ${box.map(Math.round).join(', ')}`)) : h('li', { class: 'empty' }, 'Nothing found at this score.'));
    list.dataset.count = String(found.length);
  }

  /** Finds the objects in `image` and shows them; `source` is what is drawn (a decoded picture). */
  async function detect(image, source) {
    const found = await workspace.detect(image, LOWEST_SCORE);
    const previous = shown?.source;
    shown = { source, found };
    if (previous !== source) previous?.close?.(); // a decoded file's bitmap
    if (canvas.parentNode !== preview) render(preview, canvas);
    redraw();
  }

  async function detectFile(file) {
    const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    try {
      await detect(file, bitmap);
    } catch (error) {
      bitmap.close();
      throw error;
    }
  }

  minScore.addEventListener('input', () => {
    minScoreText.textContent = `${minScore.value}%`;
    redraw();
  });
  takeImageFiles(fileInput, preview, notify, detectFile, { isolate: true });
  const { button: live } = liveWebcam({
    id: 'live-webcam',
    preview,
    canvas,
    notify,
    check: () => {
      if (!workspace.state.model) throw new Error('train a detector or import one first');
    },
    onFrame: async (video) => {
      const frame = wholeFrame(video);
      await detect(frame, frame);
      preview.dataset.frames = String(Number(preview.dataset.frames ?? 0) + 1);
    },
  });

  return tryPanel(workspace, {
    choose,
    live,
    fileInput,
    describe: (labels) => `The detector finds ${labels?.length ?? '?'} classes: ${labels?.join(', ') ?? ''}.`,
    missing: 'Train a detector (or import one) to try it.',
    body: h('div', { class: 'try-grid' }, h('div', {}, preview, h('div', { class: 'map-controls' }, h('label', { for: 'min-score' }, 'Lowest score '), minScore, minScoreText)), list),
  });
}
