// What both Try it panels share: the images they take (a chosen or dropped file, or the live
// webcam) and the panel itself.

import { h, render } from '../dom.js';
import { guarded, reportedByWorkspace } from './notices.js';
import { cameraSwitch, hasCamera } from './camera.js';

/**
 * Hands the file chosen in `fileInput`, or dropped on `preview`, to `onFile(file)` (guarded:
 * a failure is notified). `isolate` keeps a drop on the preview from bubbling any further.
 */
export function takeImageFiles(fileInput, preview, notify, onFile, { isolate = false } = {}) {
  fileInput.addEventListener('change', () => {
    const [file] = fileInput.files;
    fileInput.value = ''; // choosing the same file again is a change too
    if (file) guarded(notify, () => onFile(file));
  });
  preview.addEventListener('dragover', (event) => event.preventDefault());
  preview.addEventListener('drop', (event) => {
    event.preventDefault();
    if (isolate) event.stopPropagation();
    const [file] = event.dataTransfer.files;
    if (file) guarded(notify, () => onFile(file));
  });
}

/**
 * The Live webcam button (null without a camera). While on, the camera's video plays hidden
 * in `preview` beside `canvas`, and its frames go to `onFrame(video)` one at a time, as fast as
 * the engine answers; a failing frame stops it. `check()` throws when there is nothing to
 * predict with. `isOn()` says whether it is on.
 */
export function liveWebcam({ id, preview, canvas, notify, check, onFrame }) {
  const camera = cameraSwitch();
  const button = hasCamera() ? h('button', { type: 'button', id, 'aria-pressed': 'false', onclick: () => toggle() }, 'Live webcam') : null;

  async function toggle() {
    if (camera.current) {
      camera.close();
      button.setAttribute('aria-pressed', 'false');
      button.textContent = 'Live webcam';
      return;
    }
    await guarded(notify, async () => {
      check();
      const current = await camera.open();
      if (!current) return; // a click while it opens
      // The video plays hidden; the canvas shows each frame as predicted.
      current.video.hidden = true;
      render(preview, current.video, canvas);
      button.setAttribute('aria-pressed', 'true');
      button.textContent = 'Stop webcam';
      while (camera.current === current) {
        try {
          await onFrame(current.video);
        } catch (error) {
          if (camera.current === current) {
            if (!reportedByWorkspace(error)) notify(error.message, { kind: 'error' });
            await toggle(); // the camera stops with the loop
          }
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    });
  }

  return { button, isOn: () => Boolean(camera.current) };
}

/**
 * The Try it panel: a header with the `choose` and `live` buttons (enabled while there is a model
 * and an engine) and the `fileInput`, a status line (`describe(labels)` of the model, `missing`
 * without one), then `body`.
 */
export function tryPanel(workspace, { choose, live, fileInput, describe, missing, body }) {
  const status = h('p', { class: 'hint' });
  workspace.addEventListener('change', () => {
    const ready = Boolean(workspace.state.model) && Boolean(workspace.graft);
    choose.disabled = !ready;
    if (live) live.disabled = !ready;
    status.textContent = ready ? describe(workspace.state.modelInfo?.labels) : missing;
  });
  return h(
    'section',
    { class: 'panel', id: 'try', 'aria-labelledby': 'try-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'try-title' }, '4 · Try it'), h('div', { class: 'actions' }, choose, live, fileInput)),
    status,
    body,
  );
}
