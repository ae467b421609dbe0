// Classes: add, rename, delete; each with a bounded strip of thumbnails (each with a control to
// remove that image) and a count. Images arrive by file picker, drag and drop, a whole folder
// (one sub-folder per class) or webcam.

import { h, render } from '../dom.js';
import { UrlPool, captureFrame } from '../images.js';
import { guarded } from './notices.js';
import { cameraSwitch, hasCamera, holdToRecord } from './camera.js';
import { MAX_LABEL } from '../workspace.js';

/** However many images a class has, at most this many thumbnails are drawn. */
const MAX_THUMBNAILS = 12;

export function classesPanel(workspace, notify) {
  const list = h('div', { class: 'class-list' });
  const folderInput = h('input', { type: 'file', webkitdirectory: true, multiple: true, hidden: true, id: 'folder-input', 'aria-label': 'Choose a folder with one sub-folder per class' });
  folderInput.addEventListener('change', () => {
    const files = Array.from(folderInput.files);
    folderInput.value = '';
    importFolder(files);
  });

  async function importFolder(files) {
    await guarded(notify, async () => {
      const summary = await workspace.importFolder(files);
      report(summary.added, summary.classes.map((c) => `“${c}”`).join(', '), summary.skipped);
    });
  }

  /**
   * Tells what an import did: images already in the project are counted in one sentence;
   * any other skipped file is listed with its reason.
   */
  function report(added, where, skipped) {
    const repeats = skipped.filter((s) => s.code === 'ALREADY_EXISTS').length;
    const failed = skipped.filter((s) => s.code !== 'ALREADY_EXISTS');
    const images = (n) => `${n} image${n === 1 ? '' : 's'}`;
    let message;
    if (added === 0 && repeats > 0) message = `Nothing new for ${where}: ${repeats === 1 ? 'the image is' : `all ${images(repeats)} are`} already in the project`;
    else message = `${images(added)} added to ${where}${repeats ? `; ${images(repeats)} already in the project ${repeats === 1 ? 'was' : 'were'} left out` : ''}`;
    notify(message, { kind: failed.length ? 'warning' : 'info' });
    if (failed.length) notify(`${failed.length} file${failed.length > 1 ? 's were' : ' was'} skipped`, { kind: 'warning', details: failed.map((s) => s.reason.startsWith(`${s.name}:`) ? s.reason : `${s.name}: ${s.reason}`) });
  }

  const root = h(
    'section',
    { class: 'panel', id: 'classes', 'aria-labelledby': 'classes-title' },
    h('header', { class: 'panel-head' },
      h('h2', { id: 'classes-title' }, '1 · Your classes'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'add-class', onclick: () => guarded(notify, () => workspace.addClass()) }, '+ Add a class'),
        h('button', { type: 'button', id: 'import-folder', onclick: () => folderInput.click() }, 'Import a folder…'),
        folderInput,
      ),
    ),
    h('p', { class: 'hint' }, 'Drop images on a class, or drop a folder with one sub-folder per class anywhere here. Images are read on this device only.'),
    list,
  );

  // Dropping a folder anywhere on the panel imports it; dropping files on a card adds them there.
  dropTarget(root, workspace, notify, ({ files, folder }) => {
    if (folder) importFolder(files);
    else notify('drop images on one of the classes, or drop a folder with one sub-folder per class', { kind: 'warning' });
  });

  const cards = new Map();
  function draw() {
    const busy = Boolean(workspace.activity) || !workspace.graft;
    const seen = new Set();
    for (const [index, cls] of workspace.state.classes.entries()) {
      seen.add(cls.id);
      let card = cards.get(cls.id);
      if (!card) {
        card = classCard(workspace, cls.id, notify, report);
        cards.set(cls.id, card);
      }
      card.update(busy);
      // Move a card only when it is out of place: moving a node silently takes the focus (and a
      // half-typed class name) away from it.
      if (list.children[index] !== card.element) list.insertBefore(card.element, list.children[index] ?? null);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.dispose();
        cards.delete(id);
      }
    }
    if (!workspace.state.classes.length) render(list, h('p', { class: 'empty' }, 'No classes yet. Add one, or import a folder.'));
    else list.querySelector('.empty')?.remove();
    for (const button of root.querySelectorAll('.panel-head button')) button.disabled = busy;
  }
  workspace.addEventListener('change', draw);
  draw();
  return root;
}

/**
 * Highlights `element` while something is dragged over it; `onDrop({ files, folder })` with what
 * was dropped (refused while the workspace is busy, see `readDrop`).
 */
function dropTarget(element, workspace, notify, onDrop) {
  element.addEventListener('dragover', (event) => {
    event.preventDefault();
    element.classList.add('dragging');
  });
  element.addEventListener('dragleave', () => element.classList.remove('dragging'));
  element.addEventListener('drop', async (event) => {
    event.stopPropagation();
    event.preventDefault();
    element.classList.remove('dragging');
    const dropped = await guarded(notify, () => workspace.readDrop(event.dataTransfer));
    if (dropped) onDrop(dropped);
  });
}

function classCard(workspace, classId, notify, report) {
  const urls = new UrlPool();
  const name = h('input', { class: 'class-name', type: 'text', maxLength: MAX_LABEL, 'aria-label': 'Class name' });
  const count = h('span', { class: 'count' });
  const strip = h('ul', { class: 'thumbs', 'aria-label': 'Latest images' });
  const fileInput = h('input', { type: 'file', accept: 'image/*', multiple: true, hidden: true, 'aria-label': 'Choose images' });
  const cameraArea = h('div', { class: 'camera-area' });
  const camera = cameraSwitch();
  /** The webcam's Hold to record button and its control, while the webcam is open. */
  let recording = null;
  let shownIds = '';

  const add = (files) =>
    guarded(notify, async () => {
      const cls = workspace.classById(classId);
      const { added, skipped } = await workspace.addImages(classId, files);
      report(added, `“${cls.label}”`, skipped);
    });

  fileInput.addEventListener('change', () => {
    const files = Array.from(fileInput.files);
    fileInput.value = '';
    add(files);
  });
  name.addEventListener('change', () =>
    guarded(notify, () => workspace.renameClass(classId, name.value)).then(() => {
      name.value = workspace.state.classes.find((c) => c.id === classId)?.label ?? name.value;
    }),
  );
  name.addEventListener('keydown', (event) => event.key === 'Enter' && name.blur());

  const upload = h('button', { type: 'button', class: 'upload', onclick: () => fileInput.click() }, 'Upload images');
  const webcam = hasCamera() ? h('button', { type: 'button', class: 'webcam', onclick: () => toggleCamera() }, 'Webcam') : null;
  const remove = h('button', {
    type: 'button',
    class: 'danger remove-class',
    onclick: () => {
      const cls = workspace.classById(classId);
      if (confirm(`Delete the class “${cls.label}” and its ${cls.imageIds.length} images from this browser?`)) guarded(notify, () => workspace.removeClass(classId));
    },
  }, 'Delete');

  async function toggleCamera() {
    if (camera.current) {
      camera.close();
      recording = null;
      render(cameraArea);
      webcam.textContent = 'Webcam';
      return;
    }
    await guarded(notify, async () => {
      const opened = await camera.open();
      if (!opened) return; // a click while it opens
      if (!element.isConnected) {
        camera.close(); // the class was deleted while its camera opened
        return;
      }
      const frames = [];
      const record = h('button', { type: 'button', class: 'record', disabled: busyNow }, 'Hold to record');
      const control = holdToRecord(record, {
        onFrame: () => captureFrame(opened.video).then((file) => frames.push(file), () => {}),
        onEnd: () => {
          const batch = frames.splice(0);
          if (batch.length) add(batch);
        },
      });
      recording = { button: record, control };
      render(cameraArea, opened.video, record);
      webcam.textContent = 'Close webcam';
    });
  }

  const element = h(
    'article',
    { class: 'class-card', 'data-class-id': classId },
    h('div', { class: 'class-head' }, name, count, remove),
    strip,
    h('div', { class: 'actions' }, upload, webcam, fileInput),
    cameraArea,
  );
  dropTarget(element, workspace, notify, ({ files, folder }) => {
    if (folder) notify('a folder was dropped on a class: drop it beside the classes to import one class per sub-folder', { kind: 'warning' });
    else add(files);
  });

  const removeImage = (imageId) => guarded(notify, () => workspace.removeImage(classId, imageId));

  let busyNow = false;
  async function drawThumbnails(cls) {
    const ids = cls.imageIds.slice(-MAX_THUMBNAILS);
    const key = `${ids.join()}|${cls.imageIds.length}`;
    if (key === shownIds) return;
    shownIds = key;
    const total = cls.imageIds.length;
    const records = await workspace.store.images(ids);
    // A later draw started meanwhile: it has the newer list.
    if (key !== shownIds) return;
    urls.clear();
    const more = total - records.length;
    render(
      strip,
      records.map((r) =>
        h(
          'li',
          { class: 'thumb', 'data-image-id': r.id },
          r.thumb ? h('img', { src: urls.url(r.thumb), alt: r.name, width: 56, height: 56, loading: 'lazy' }) : h('span', { class: 'no-thumb', title: r.name }, '?'),
          h('button', { type: 'button', class: 'remove-image', 'aria-label': `Remove ${r.name}`, title: `Remove ${r.name}`, disabled: busyNow, onclick: () => removeImage(r.id) }, '×'),
        ),
      ),
      more > 0 ? h('li', { class: 'more' }, `+${more}`) : null,
    );
  }

  return {
    element,
    update(busy) {
      const cls = workspace.state.classes.find((c) => c.id === classId);
      if (!cls) return;
      busyNow = busy;
      if (document.activeElement !== name) name.value = cls.label;
      count.textContent = `${cls.imageIds.length} image${cls.imageIds.length === 1 ? '' : 's'}`;
      for (const button of [upload, webcam, remove, recording?.button, ...strip.querySelectorAll('button')]) if (button) button.disabled = busy;
      // Frames recorded when something else starts are added with it, not lost in a disabled button.
      if (busy) recording?.control.stop();
      name.disabled = busy;
      drawThumbnails(cls);
    },
    dispose() {
      camera.close();
      urls.clear();
      element.remove();
    },
  };
}
