// Try it: drop, choose or capture an image and see the top classes with probability bars;
// or let the webcam predict live.

import { h, render, percent } from '../dom.js';
import { UrlPool, captureFrame } from '../images.js';
import { guarded } from './notices.js';
import { hasCamera, openCamera } from './camera.js';

export function tryItPanel(workspace, notify, { grayscale = false } = {}) {
  const urls = new UrlPool();
  const preview = h('div', { class: `preview${grayscale ? ' grayscale' : ''}` }, h('p', { class: 'hint' }, 'Drop an image here or choose one.'));
  const bars = h('ol', { class: 'bars', id: 'predictions', 'aria-live': 'polite', 'aria-label': 'Predictions' });
  const fileInput = h('input', { type: 'file', accept: 'image/*', id: 'try-input', hidden: true, 'aria-label': 'Choose an image to classify' });
  const choose = h('button', { type: 'button', onclick: () => fileInput.click() }, 'Choose an image…');
  const live = hasCamera() ? h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => toggleLive() }, 'Live webcam') : null;
  let camera = null;

  async function classify(image, { show = true } = {}) {
    if (show) {
      urls.clear();
      render(preview, h('img', { src: urls.url(image), alt: image.name ? `Image to classify: ${image.name}` : 'Image to classify' }));
    }
    const predictions = await workspace.predict(image);
    render(
      bars,
      predictions.map(({ label, score }) =>
        h('li', {}, h('span', { class: 'label' }, label), h('span', { class: 'bar', role: 'presentation' }, h('span', { class: 'fill', style: { width: `${(score * 100).toFixed(1)}%` } })), h('span', { class: 'score' }, percent(score))),
      ),
    );
    bars.dataset.top = predictions[0]?.label ?? '';
  }

  fileInput.addEventListener('change', () => {
    const [file] = fileInput.files;
    fileInput.value = '';
    if (file) guarded(notify, () => classify(file));
  });
  preview.addEventListener('dragover', (event) => event.preventDefault());
  preview.addEventListener('drop', (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) guarded(notify, () => classify(file));
  });

  async function toggleLive() {
    if (camera) {
      camera.stop();
      camera = null;
      live.setAttribute('aria-pressed', 'false');
      live.textContent = 'Live webcam';
      render(preview, h('p', { class: 'hint' }, 'Drop an image here or choose one.'));
      return;
    }
    await guarded(notify, async () => {
      if (!workspace.state.model) throw new Error('train a model or import one first');
      camera = await openCamera();
      render(preview, camera.video);
      live.setAttribute('aria-pressed', 'true');
      live.textContent = 'Stop webcam';
      const current = camera;
      // One prediction at a time, as fast as the engine answers.
      while (camera === current) {
        try {
          await classify(await captureFrame(current.video), { show: false });
        } catch (error) {
          if (camera === current) notify(error.message, { kind: 'error' });
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });
  }

  const status = h('p', { class: 'hint' });
  workspace.addEventListener('change', () => {
    const ready = Boolean(workspace.state.model) && Boolean(workspace.graft);
    choose.disabled = !ready;
    if (live) live.disabled = !ready;
    const labels = workspace.state.modelInfo?.labels;
    status.textContent = ready ? `The model knows ${labels?.length ?? '?'} classes: ${labels?.join(', ') ?? ''}.` : 'Train a model (or import one) to try it.';
  });

  return h(
    'section',
    { class: 'panel', id: 'try', 'aria-labelledby': 'try-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'try-title' }, '4 · Try it'), h('div', { class: 'actions' }, choose, live, fileInput)),
    status,
    h('div', { class: 'try-grid' }, preview, bars),
  );
}
