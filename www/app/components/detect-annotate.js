// Annotate: the classes (pick the one to draw, add, rename, delete), the images (add files,
// import a YOLO folder, step through them, mark one as held out, remove it) and the box editor
// on the current image.

import { h, render } from '../dom.js';
import { UrlPool } from '../images.js';
import { guarded } from './notices.js';
import { MAX_LABEL } from '../workspace.js';
import { SHORTCUTS, boxesEditor, classColour } from './boxes-editor.js';

/** Thumbnails drawn around the current image, however many images there are. */
const STRIP_SIZE = 40;

export function annotatePanel(workspace, notify) {
  const urls = new UrlPool();
  const thumbUrls = new UrlPool();
  /** The image the editor shows: edits, the toolbar and the strip are about this one. */
  let currentId = null;
  /** The image asked for last, shown once its picture is read (until then the editor keeps the old one). */
  let wantedId = null;
  /** The boxes the editor was given or wrote last: other ones (a class deleted) are shown again. */
  let shownBoxes = null;
  /** Box edits being saved: the editor shows them already. */
  let savingBoxes = 0;
  let drawClassId = workspace.state.classes[0]?.id ?? null;

  const fileInput = h('input', { type: 'file', accept: 'image/*', multiple: true, hidden: true, id: 'detect-files', 'aria-label': 'Choose images to annotate' });
  const folderInput = h('input', { type: 'file', webkitdirectory: true, multiple: true, hidden: true, id: 'yolo-input', 'aria-label': 'Choose a YOLO dataset folder (with data.yaml)' });
  const addImages = h('button', { type: 'button', id: 'add-images', onclick: () => fileInput.click() }, 'Add images…');
  const importYolo = h('button', { type: 'button', id: 'import-yolo', onclick: () => folderInput.click() }, 'Import a YOLO folder…');
  const addClass = h('button', { type: 'button', id: 'add-class', onclick: () => guarded(notify, async () => {
    const cls = await workspace.addClass();
    drawClassId ??= cls.id;
  }) }, '+ Add a class');
  const classList = h('ol', { class: 'detect-classes', id: 'detect-classes', 'aria-label': 'Classes' });
  const counts = h('p', { class: 'hint', id: 'annotation-counts', 'aria-live': 'polite' });

  const previous = h('button', { type: 'button', id: 'previous-image', 'aria-label': 'Previous image', onclick: () => step(-1) }, '‹');
  const next = h('button', { type: 'button', id: 'next-image', 'aria-label': 'Next image', onclick: () => step(1) }, '›');
  const position = h('span', { class: 'image-position', id: 'image-position' });
  const split = h(
    'select',
    { id: 'image-split', 'aria-label': 'Use of this image' },
    h('option', { value: 'train' }, 'Training'),
    h('option', { value: 'val' }, 'Held out (results)'),
  );
  const removeImage = h('button', { type: 'button', class: 'danger', id: 'remove-image' }, 'Remove image');
  const strip = h('ul', { class: 'image-strip', id: 'image-strip', 'aria-label': 'Images' });
  const empty = h('p', { class: 'empty', id: 'no-images' }, 'No images yet. Add some, or import a folder in the YOLO layout (data.yaml, images/, labels/).');

  const editor = boxesEditor({
    onChange: async (boxes) => {
      const id = currentId;
      savingBoxes += 1;
      const saved = await guarded(notify, () => workspace.setBoxes(id, boxes).then(() => true));
      savingBoxes -= 1;
      if (savingBoxes || id !== currentId) return;
      // Saved, the editor's boxes are the image's; refused, the saved ones are shown again.
      if (saved) shownBoxes = workspace.state.images.find((i) => i.id === id)?.boxes;
      else show(id);
    },
    onNavigate: (by) => step(by),
    classForKey: (n, forNextBox) => {
      const cls = workspace.state.classes[n - 1];
      if (cls && forNextBox) pickClass(cls.id);
      return cls?.id ?? null;
    },
    currentClass: () => drawClassId ?? workspace.state.classes[0]?.id ?? null,
  });
  const shortcuts = h(
    'details',
    { class: 'shortcuts' },
    h('summary', {}, 'Mouse, touch and keyboard'),
    h('dl', { id: 'box-shortcuts' }, SHORTCUTS.map(([keys, what]) => [h('dt', {}, keys), h('dd', {}, what)])),
  );

  function pickClass(id) {
    drawClassId = id;
    for (const radio of classList.querySelectorAll('input[type="radio"]')) radio.checked = radio.value === id;
  }

  function step(by) {
    const images = workspace.state.images;
    // From the image asked for, so that keys pressed faster than pictures load still count.
    const at = images.findIndex((i) => i.id === (wantedId ?? currentId));
    const target = images[at + by];
    if (target) show(target.id);
  }

  /** Shows image `id` in the editor, its blob read from storage. */
  async function show(id) {
    wantedId = id;
    let blob = null;
    try {
      blob = await workspace.blob(id);
      // Box edits being saved (more may queue meanwhile): the boxes once they are stored.
      for (let pending; pending !== workspace.saving; ) await (pending = workspace.saving);
    } catch {
      // not readable (storage closed): stays on the image shown
    }
    if (wantedId !== id) return;
    const image = workspace.state.images.find((i) => i.id === id);
    if (!image || !blob) {
      wantedId = currentId;
      return;
    }
    // Only now: an edit made while the picture loaded was made on the image still shown.
    currentId = id;
    urls.clear();
    shownBoxes = image.boxes;
    editor.show({ url: urls.url(blob), name: image.name, width: image.width, height: image.height }, image.boxes);
    drawChrome();
  }

  /** The toolbar, the counts and the strip around the current image. */
  function drawChrome() {
    const { images } = workspace.state;
    const at = images.findIndex((i) => i.id === currentId);
    const image = images[at];
    const busy = Boolean(workspace.activity) || !workspace.graft;
    previous.disabled = at <= 0;
    next.disabled = at < 0 || at >= images.length - 1;
    split.disabled = removeImage.disabled = !image || busy;
    if (image) split.value = image.split;
    position.textContent = image ? `Image ${at + 1} of ${images.length}: ${image.name}` : '';
    const training = images.filter((i) => i.split === 'train').length;
    const boxes = images.reduce((n, i) => n + i.boxes.length, 0);
    counts.textContent = `${images.length} image${images.length === 1 ? '' : 's'} (${training} for training, ${images.length - training} held out) with ${boxes} box${boxes === 1 ? '' : 'es'}. A training image without boxes teaches what is not an object.`;
    empty.hidden = images.length > 0;
    const from = Math.max(0, Math.min(at - STRIP_SIZE / 2, images.length - STRIP_SIZE));
    drawStrip(images.slice(from, from + STRIP_SIZE));
  }

  let stripKey = '';
  async function drawStrip(shown) {
    const key = shown.map((i) => `${i.id}:${i.boxes.length}:${i.split}:${i.id === currentId}`).join();
    if (key === stripKey) return;
    stripKey = key;
    const records = await workspace.store.images(shown.map((i) => i.id));
    if (key !== stripKey) return;
    const thumbs = new Map(records.map((r) => [r.id, r.thumb]));
    thumbUrls.clear();
    render(
      strip,
      shown.map((image) =>
        h(
          'li',
          { 'data-image-id': image.id },
          h(
            'button',
            { type: 'button', class: `strip-thumb${image.id === currentId ? ' current' : ''}${image.split === 'val' ? ' held-out' : ''}`, 'aria-current': image.id === currentId ? 'true' : undefined, 'aria-label': `${image.name}: ${image.boxes.length} boxes${image.split === 'val' ? ', held out' : ''}`, onclick: () => show(image.id) },
            thumbs.get(image.id) ? h('img', { src: thumbUrls.url(thumbs.get(image.id)), alt: '', width: 56, height: 56 }) : h('span', { class: 'no-thumb' }, '?'),
            h('span', { class: 'strip-count' }, String(image.boxes.length)),
          ),
        ),
      ),
    );
  }

  const classRows = new Map();
  function drawClasses() {
    const { classes } = workspace.state;
    if (!classes.some((c) => c.id === drawClassId)) drawClassId = classes[0]?.id ?? null;
    const seen = new Set();
    classes.forEach((cls, index) => {
      seen.add(cls.id);
      let row = classRows.get(cls.id);
      if (!row) {
        row = classRow(cls.id);
        classRows.set(cls.id, row);
      }
      row.update(index);
      if (classList.children[index] !== row.element) classList.insertBefore(row.element, classList.children[index] ?? null);
    });
    for (const [id, row] of classRows) {
      if (!seen.has(id)) {
        row.element.remove();
        classRows.delete(id);
      }
    }
    editor.setClasses(classes);
  }

  function classRow(classId) {
    const radio = h('input', { type: 'radio', name: 'draw-class', value: classId, onchange: () => pickClass(classId) });
    const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    const key = h('kbd', {});
    const name = h('input', { type: 'text', class: 'class-name', maxLength: MAX_LABEL });
    const count = h('span', { class: 'count' });
    const remove = h('button', { type: 'button', class: 'link remove-class' }, '×');
    name.addEventListener('change', () =>
      guarded(notify, () => workspace.renameClass(classId, name.value)).then(() => {
        name.value = workspace.state.classes.find((c) => c.id === classId)?.label ?? name.value;
      }),
    );
    name.addEventListener('keydown', (event) => event.key === 'Enter' && name.blur());
    remove.addEventListener('click', () => {
      const cls = workspace.classById(classId);
      const n = workspace.boxCount(classId);
      if (!n || confirm(`Delete the class “${cls.label}” and its ${n} boxes?`)) guarded(notify, () => workspace.removeClass(classId));
    });
    const element = h('li', { class: 'detect-class', 'data-class-id': classId }, h('label', { class: 'pick' }, radio, swatch, key), name, count, remove);
    return {
      element,
      update(index) {
        const cls = workspace.state.classes[index];
        const busy = Boolean(workspace.activity);
        radio.checked = classId === drawClassId;
        radio.setAttribute('aria-label', `Draw boxes of ${cls.label}${index < 9 ? ` (key ${index + 1})` : ''}`);
        swatch.style.setProperty('--box-colour', classColour(index));
        key.textContent = index < 9 ? String(index + 1) : '';
        if (document.activeElement !== name) name.value = cls.label;
        name.setAttribute('aria-label', `Name of class ${index + 1}`);
        name.disabled = remove.disabled = busy;
        remove.setAttribute('aria-label', `Delete the class ${cls.label}`);
        const n = workspace.boxCount(classId);
        count.textContent = `${n} box${n === 1 ? '' : 'es'}`;
      },
    };
  }

  /** Says what an import did, listing the files left out. */
  function report({ added, repeated, skipped, classes }) {
    const where = classes ? ` with the classes ${classes.map((c) => `“${c}”`).join(', ')}` : '';
    notify(`${added} image${added === 1 ? '' : 's'} added${where}${repeated ? `; ${repeated} already in the project left out` : ''}`, { kind: skipped.length ? 'warning' : 'info' });
    if (skipped.length) notify(`${skipped.length} file${skipped.length > 1 ? 's were' : ' was'} skipped`, { kind: 'warning', details: skipped.map((s) => `${s.name}: ${s.reason}`) });
  }

  async function addFiles(files) {
    await guarded(notify, async () => {
      const summary = await workspace.addImages(files.map((file) => ({ file })));
      report(summary);
      if (!currentId && workspace.state.images.length) await show(workspace.state.images[0].id);
    });
  }

  async function importFolder(files) {
    await guarded(notify, async () => {
      const summary = await workspace.importYolo(files);
      report(summary);
      if (!currentId && workspace.state.images.length) await show(workspace.state.images[0].id);
    });
  }

  fileInput.addEventListener('change', () => {
    const files = Array.from(fileInput.files);
    fileInput.value = '';
    addFiles(files);
  });
  folderInput.addEventListener('change', () => {
    const files = Array.from(folderInput.files);
    folderInput.value = '';
    importFolder(files);
  });
  split.addEventListener('change', () => guarded(notify, () => workspace.setSplit(currentId, split.value)));
  removeImage.addEventListener('click', () =>
    guarded(notify, async () => {
      const images = workspace.state.images;
      const at = images.findIndex((i) => i.id === currentId);
      const neighbour = images[at + 1] ?? images[at - 1];
      await workspace.removeImage(currentId);
      currentId = null;
      if (neighbour) await show(neighbour.id);
      else editor.clear();
    }),
  );

  const root = h(
    'section',
    { class: 'panel', id: 'annotate', 'aria-labelledby': 'annotate-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'annotate-title' }, '1 · Your images and boxes'), h('div', { class: 'actions' }, addImages, importYolo, fileInput, folderInput)),
    h('p', { class: 'hint' }, 'Drop images here, or a folder in the YOLO layout. Pick a class, then drag on the image to draw a box. Images are read on this device only.'),
    counts,
    h(
      'div',
      { class: 'annotate-grid' },
      h('div', { class: 'class-picker' }, h('h3', {}, 'Classes'), classList, addClass),
      h(
        'div',
        { class: 'editor-area' },
        h('div', { class: 'editor-toolbar' }, previous, position, next, split, removeImage),
        empty,
        editor.element,
        shortcuts,
      ),
    ),
    strip,
  );
  editor.clear();

  root.addEventListener('dragover', (event) => {
    event.preventDefault();
    root.classList.add('dragging');
  });
  root.addEventListener('dragleave', () => root.classList.remove('dragging'));
  root.addEventListener('drop', async (event) => {
    event.preventDefault();
    root.classList.remove('dragging');
    const dropped = await guarded(notify, () => workspace.readDrop(event.dataTransfer));
    if (!dropped) return;
    const { files, folder } = dropped;
    // A folder with a .yaml file (its data.yaml) is a YOLO dataset; any other, images.
    if (folder && files.some((file) => /\.ya?ml$/i.test(file.name))) importFolder(files);
    else addFiles(files);
  });

  workspace.addEventListener('change', () => {
    const busy = Boolean(workspace.activity) || !workspace.graft;
    addImages.disabled = importYolo.disabled = addClass.disabled = busy;
    drawClasses();
    if (currentId && !workspace.state.images.some((i) => i.id === currentId)) {
      currentId = wantedId = null; // deleted (all data, or the image)
      editor.clear();
    }
    const current = workspace.state.images.find((i) => i.id === currentId);
    const loading = wantedId !== currentId;
    if (current && current.boxes !== shownBoxes && !savingBoxes && !loading) show(current.id);
    if (!currentId && !wantedId && workspace.state.images.length && !workspace.activity) show(workspace.state.images[0].id);
    drawChrome();
  });
  drawClasses();
  drawChrome();
  return root;
}
