// Try it: drop, choose or capture an image and see the top classes with probability bars and
// a heat map of where the evidence for the top class lies; or let the webcam predict live.

import { drawExplanation } from '../../../pkg/graft.js';
import { h, render, percent } from '../dom.js';
import { frameCanvas } from '../images.js';
import { guarded } from './notices.js';
import { liveWebcam, takeImageFiles, tryPanel } from './try-input.js';

export function tryItPanel(workspace, notify, { grayscale = false } = {}) {
  const hint = () => h('p', { class: 'hint' }, 'Drop an image here or choose one.');
  const preview = h('div', { class: `preview${grayscale ? ' grayscale' : ''}` }, hint());
  const canvas = h('canvas', { class: 'explained', id: 'explained', role: 'img', 'aria-label': 'The image with its heat map' });
  const caption = h('p', { class: 'hint', id: 'explained-caption', 'aria-live': 'polite' });
  const bars = h('ol', { class: 'bars', id: 'predictions', 'aria-live': 'polite', 'aria-label': 'Predictions' });
  const fileInput = h('input', { type: 'file', accept: 'image/*', id: 'try-input', hidden: true, 'aria-label': 'Choose an image to classify' });
  const choose = h('button', { type: 'button', onclick: () => fileInput.click() }, 'Choose an image…');
  const showMap = h('input', { type: 'checkbox', id: 'heatmap-toggle', checked: true });
  const opacity = h('input', { type: 'range', id: 'heatmap-opacity', min: 0, max: 100, value: 60, 'aria-label': 'Heat map opacity' });
  const fineMap = h('input', { type: 'checkbox', id: 'heatmap-fine' });
  const mapControls = h(
    'div',
    { class: 'map-controls' },
    h('label', {}, showMap, ' Heat map'),
    h('label', { title: '14×14 cells instead of 7×7: sharper, a little slower' }, fineMap, ' Fine'),
    h('label', {}, 'Opacity ', opacity),
  );
  /** The image shown and its explanation, redrawn when the controls change. */
  let shown = null;

  async function redraw() {
    if (!shown) return;
    const { image, explanation } = shown;
    if (showMap.checked) {
      await drawExplanation(canvas, image, explanation, { opacity: Number(opacity.value) / 100 });
      caption.textContent = `Where the evidence for “${explanation.label}” (${percent(explanation.score)}) lies: brighter is stronger. The dimmed border is outside what the model sees.`;
    } else {
      await drawExplanation(canvas, image, explanation, { opacity: 0 });
      caption.textContent = '';
    }
  }

  async function classify(image) {
    const { predictions, explanation } = await workspace.explain(image, { fine: fineMap.checked });
    shown = { image, explanation };
    if (canvas.parentNode !== preview) render(preview, canvas);
    await redraw();
    render(
      bars,
      predictions.map(({ label, score }) =>
        h('li', {}, h('span', { class: 'label' }, label), h('span', { class: 'bar', role: 'presentation' }, h('span', { class: 'fill', style: { width: `${(score * 100).toFixed(1)}%` } })), h('span', { class: 'score' }, percent(score))),
      ),
    );
    bars.dataset.top = predictions[0]?.label ?? '';
  }

  showMap.addEventListener('change', () => guarded(notify, redraw));
  opacity.addEventListener('input', () => guarded(notify, redraw));
  // The live loop picks the setting up on its next frame; a still image is explained again.
  fineMap.addEventListener('change', () => {
    if (shown && !webcam.isOn()) guarded(notify, () => classify(shown.image));
  });
  takeImageFiles(fileInput, preview, notify, classify);
  const webcam = liveWebcam({
    preview,
    canvas,
    notify,
    check: () => {
      if (!workspace.state.model) throw new Error('train a model or import one first');
    },
    onFrame: (video) => classify(frameCanvas(video)),
  });
  const live = webcam.button;

  return tryPanel(workspace, {
    choose,
    live,
    fileInput,
    describe: (labels) => `The model knows ${labels?.length ?? '?'} classes: ${labels?.join(', ') ?? ''}.`,
    missing: 'Train a model (or import one) to try it.',
    body: h('div', { class: 'try-grid' }, h('div', {}, preview, mapControls, caption), bars),
  });
}
