// The web app's detection mode end to end in headless Chromium, as a visitor uses it: the box
// editor with a mouse, the keyboard and a finger; a generated YOLO folder through the folder
// input (and a broken one refused by file and line); training with its live curves and a Stop;
// the results (mAP, per-class AP, precision-recall curves); Try it on an image and the webcam;
// a reload; the model downloaded for the CLI and imported back. Every request of every page and
// worker of the file is recorded and must be a GET of the page's own server. Screenshots go to
// test-artifacts/app-detect/ (not committed).
//
// Each test runs alone (`node --test --test-name-pattern '<name>' tests/browser/app-detect.test.mjs`)
// and in any order: the shared project is imported, trained and exported once per run by
// memoised helpers; tests that edit boxes or import a model work in fresh contexts of their own.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './server.mjs';
import { graft, modelHeader } from './fixtures.mjs';
import { MINUTES, cameraTrackStates, countFrames, dropImages, framesPerSecond, keepCameraStreams, once, useApp } from './app-harness.mjs';

const DETECTION_SET_BIN = join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'examples', 'detection-set');
/** The generated set: 24 training and 8 held-out images, 3 classes; PNG, so Node reads sizes. */
const SET = { train: 24, val: 8, seed: 1 };
const CLASSES = ['trouser', 'sneaker', 'bag'];
const EPOCHS = 8;
const INPUT_SIZE = 224;
/** Turned on, so that the tuned blocks go through storage, export, reload and import. */
const FINE_TUNE_BLOCKS = 2;
/** A detector that learnt nothing scores about 0; this one, about 0.3 (see the run's log). */
const MIN_MAP50 = 0.15;

const app = useApp({ artifacts: 'app-detect', path: '/www/detect/?backend=cpu', projectId: 'detect-project', title: 'detection app' });
const { timings, timed, shot, newContext, openApp, freshApp, storedProject } = app;
let set;

/** The generated YOLO folder, and each image's size and true boxes in pixels. */
function generateSet() {
  const root = mkdtempSync(join(tmpdir(), 'graft-app-detect-'));
  const folder = join(root, 'fashion');
  const args = [folder, `${SET.train}`, `${SET.val}`, `${SET.seed}`, 'png'];
  // The example built by `cargo test`, or built now.
  if (existsSync(DETECTION_SET_BIN)) execFileSync(DETECTION_SET_BIN, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  else execFileSync('cargo', ['run', '--release', '--quiet', '--example', 'detection-set', '--', ...args], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
  const images = (split) =>
    readdirSync(join(folder, 'images', split))
      .sort()
      .map((file) => {
        const png = readFileSync(join(folder, 'images', split, file));
        const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
        const lines = readFileSync(join(folder, 'labels', split, file.replace(/\.png$/, '.txt')), 'utf8').trim().split('\n').filter(Boolean);
        const boxes = lines.map((line) => {
          const [c, cx, cy, w, h] = line.split(' ').map(Number);
          return { label: CLASSES[c], box: [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height] };
        });
        return { path: join(folder, 'images', split, file), name: file, width, height, boxes };
      });
  // Notes beside the dataset: listed, never read.
  writeFileSync(join(folder, 'README.txt'), 'About this dataset.\n');
  // The same folder with a label line whose class is not in data.yaml.
  const broken = join(root, 'broken', 'fashion');
  cpSync(folder, broken, { recursive: true });
  appendFileSync(join(broken, 'labels', 'train', 'train_0002.txt'), '7 0.5 0.5 0.1 0.1\n');
  // And one whose last class name is longer than the app allows (the engine takes it).
  const longName = join(root, 'long-name', 'fashion');
  cpSync(folder, longName, { recursive: true });
  const yaml = join(longName, 'data.yaml');
  writeFileSync(yaml, readFileSync(yaml, 'utf8').replace(/2: bag/, `2: ${'b'.repeat(61)}`));
  return { root, folder, broken, longName, train: images('train'), val: images('val') };
}

const iou = (a, b) => {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (r) => (r[2] - r[0]) * (r[3] - r[1]);
  return (w * h) / (area(a) + area(b) - w * h);
};

/** Waits until the stored boxes of image `index` pass `check` (saves are asynchronous). */
async function storedBoxes(page, index, check, what) {
  let boxes;
  for (let tries = 0; tries < 50; tries++) {
    boxes = (await storedProject(page))?.images[index]?.boxes ?? [];
    if (check(boxes)) return boxes;
    await page.waitForTimeout(100);
  }
  assert.fail(`${what}: stored boxes ${JSON.stringify(boxes)}`);
}

const near = (actual, expected, tolerance = 2) => actual.length === expected.length && actual.every((v, i) => Math.abs(v - expected[i]) <= tolerance);

/** Screen <-> image pixels for the editor's current image. */
async function geometry(page) {
  const rect = await page.locator('.box-layer').boundingBox();
  const { width, height } = await page.$eval('.box-picture', (img) => ({ width: img.naturalWidth, height: img.naturalHeight }));
  return {
    rect,
    width,
    height,
    toScreen: (x, y) => [rect.x + (x / width) * rect.width, rect.y + (y / height) * rect.height],
    scale: width / rect.width,
  };
}

/** A fresh project with `files` added through the image input, the first in the editor. */
async function projectWith(files, options) {
  const { context, page } = await freshApp(options);
  await page.setInputFiles('#detect-files', files);
  await page.waitForFunction((n) => document.getElementById('image-position').textContent.startsWith(`Image 1 of ${n}`), files.length);
  await page.waitForFunction(() => document.querySelector('.box-picture').complete && document.querySelector('.box-picture').naturalWidth > 0);
  return { context, page };
}

const countText = (page) => page.textContent('#annotation-counts');

/** Keeps `store` busy in a write (a slow disk) until `releaseStorage`. */
const holdStorage = (page, store) =>
  page.evaluate(
    (name) =>
      new Promise((started, failed) => {
        window.storageHeld = true;
        const open = indexedDB.open('graft');
        open.onerror = () => failed(open.error);
        open.onsuccess = () => {
          const held = open.result.transaction(name, 'readwrite').objectStore(name);
          // A transaction with no request left commits: the next is asked for from the last.
          const keepBusy = () => {
            held.get('no such record').onsuccess = () => window.storageHeld && keepBusy();
          };
          keepBusy();
          started();
        };
      }),
    store,
  );
const releaseStorage = (page) => page.evaluate(() => (window.storageHeld = false));

// ---- The shared project: imported, trained, exported, each once ----

let main;

const ensureImported = once(async () => {
  const context = await newContext();
  const page = await context.newPage();
  main = { context, page };
  await timed('load (cold: engine and weights)', () => openApp(page));
  // The files whose text the page reads.
  await page.evaluate(() => {
    globalThis.textRead = [];
    const { text } = Blob.prototype;
    Blob.prototype.text = function () {
      globalThis.textRead.push(this.webkitRelativePath || this.name);
      return text.call(this);
    };
  });
  await timed(`import the YOLO folder (${SET.train + SET.val} images)`, async () => {
    await page.setInputFiles('#yolo-input', set.folder);
    await page.waitForFunction((n) => document.getElementById('annotation-counts').textContent.startsWith(`${n} images`) || document.querySelector('.notice.error'), SET.train + SET.val, { timeout: 5 * MINUTES });
  });
  const error = await page.$('.notice.error');
  if (error) assert.fail(`import failed: ${await error.textContent()}`);
  await page.waitForFunction(() => !document.getElementById('import-yolo').disabled);
  await shot(page, '01-imported');
  return { page, notices: await page.evaluate(() => globalThis.noticeLog), textRead: await page.evaluate(() => globalThis.textRead) };
});

/**
 * The shared project trained: first stopped after its first step (Stop keeps a detector), then
 * trained in full with the frame rate counted and the charts' point counts recorded.
 */
const ensureTrained = once(async () => {
  const { page } = await ensureImported();
  await page.click('.advanced summary');
  await page.fill('#option-epochs', String(EPOCHS));
  await page.selectOption('#option-inputSize', String(INPUT_SIZE));
  await page.fill('#option-fineTuneBlocks', String(FINE_TUNE_BLOCKS));
  await page.click('#train');
  await page.waitForFunction(() => Number(document.getElementById('train-progress').value) > 0, null, { timeout: 5 * MINUTES });
  await page.click('#stop');
  await page.waitForFunction(() => /^Trained.*\(stopped\)/.test(document.getElementById('train-status').textContent) || document.querySelector('.notice.error'), null, { timeout: 5 * MINUTES });
  const stopped = await page.textContent('#train-status');
  await page.evaluate(() => {
    globalThis.chartPoints = { loss: [], map: [] };
    for (const key of ['loss', 'map']) {
      const chart = document.querySelector(`.chart[data-metric="${key}"]`);
      new MutationObserver(() => globalThis.chartPoints[key].push(Number(chart.dataset.points))).observe(chart, { attributes: true, attributeFilter: ['data-points'] });
    }
    globalThis.statusTexts = [];
    const status = document.getElementById('train-status');
    new MutationObserver(() => globalThis.statusTexts.push(status.textContent)).observe(status, { childList: true, characterData: true, subtree: true });
  });
  await countFrames(page);
  await page.waitForFunction(() => !document.getElementById('train').disabled);
  await timed(`train ${EPOCHS} epochs at ${INPUT_SIZE} px on ${SET.train} images, then measure ${SET.val}`, async () => {
    await page.click('#train');
    await page.waitForFunction(() => /^Trained/.test(document.getElementById('train-status').textContent) || document.querySelector('.notice.error'), null, { timeout: 5 * MINUTES });
  });
  const error = await page.$('.notice.error');
  if (error) assert.fail(`training failed: ${await error.textContent()}`);
  const fps = await framesPerSecond(page);
  const watched = await page.evaluate(() => ({ chartPoints: globalThis.chartPoints, statusTexts: globalThis.statusTexts }));
  timings['main thread frames per second while training'] = Number(fps.toFixed(1));
  await page.waitForSelector('#results [data-metric="map50"]');
  await shot(page, '02-trained');
  return { ...watched, fps, stopped, summary: await page.textContent('#train-status'), project: await storedProject(page) };
});

const ensureExported = once(async () => {
  await ensureTrained();
  const { page } = main;
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-model')]);
  const path = join(set.root, 'detector.safetensors');
  await download.saveAs(path);
  return { path, filename: download.suggestedFilename() };
});

/** Detects in `file` with Try it; resolves to the objects listed, at the slider's score. */
async function tryImage(page, file) {
  await page.evaluate(() => delete document.getElementById('found').dataset.count);
  await page.setInputFiles('#try-input', file);
  await page.waitForFunction(() => document.getElementById('found').dataset.count !== undefined || document.querySelector('.notice.error'), null, { timeout: 2 * MINUTES });
  return page.$eval('#found', (list) => Number(list.dataset.count));
}

/** Sets the lowest-score slider (in percent) and returns how many objects are listed. */
async function setMinScore(page, value) {
  await page.$eval('#min-score', (input, value) => {
    input.value = String(value);
    input.dispatchEvent(new Event('input'));
  }, value);
  return page.$eval('#found', (list) => Number(list.dataset.count));
}

before(() => {
  set = generateSet();
});

test('the detection page has its own project, the mode switch and the same policy; the classifier is untouched', async () => {
  const { page, notices } = await ensureImported();
  assert.equal(await page.getAttribute('.mode-switch a[aria-current="page"]', 'href'), './');
  assert.match(await page.textContent('.mode-switch a[aria-current="page"]'), /Detect objects/);
  const csp = await page.$eval('meta[http-equiv="Content-Security-Policy"]', (m) => m.content);
  const home = readFileSync(join(repoRoot, 'index.html'), 'utf8').match(/Content-Security-Policy" content="([^"]+)"/)[1];
  assert.equal(csp, home, 'the same policy as the classifier page');
  assert.ok(notices.some((n) => /32 images added with the classes “trouser”, “sneaker”, “bag”/.test(n.text)), JSON.stringify(notices));
  // The classifier's project, in the same browser, is its own.
  const classifier = await main.context.newPage();
  await openApp(classifier, '/?backend=cpu');
  const cards = await classifier.$$eval('.class-card', (all) => all.map((c) => [c.querySelector('.class-name').value, c.querySelector('.count').textContent]));
  assert.deepEqual(cards, [['Class 1', '0 images'], ['Class 2', '0 images']]);
  assert.equal(await classifier.getAttribute('.mode-switch a[aria-current="page"]', 'href'), './');
  await classifier.close();
});

test('a YOLO folder imports through the folder input: its classes, its splits and its boxes in pixels', async () => {
  const { page, textRead } = await ensureImported();
  assert.match(await countText(page), /^32 images \(24 for training, 8 held out\)/);
  // Only data.yaml and the label files are read, not the notes beside them.
  assert.deepEqual(textRead.filter((path) => !/\/labels\/(train|val)\/[^/]+\.txt$/.test(path)), ['fashion/data.yaml']);
  assert.equal(textRead.length, 1 + readdirSync(join(set.folder, 'labels', 'train')).length + readdirSync(join(set.folder, 'labels', 'val')).length);
  const project = await storedProject(page);
  assert.deepEqual(project.classes.map((c) => c.label), CLASSES, 'the folder’s classes replace the empty preset one');
  const byName = new Map(project.images.map((image) => [`${image.split}/${image.name}`, image]));
  for (const [split, images] of [['train', set.train], ['val', set.val]]) {
    for (const expected of images) {
      const stored = byName.get(`${split}/${expected.name}`);
      assert.ok(stored, `${split}/${expected.name} imported`);
      assert.deepEqual([stored.width, stored.height], [expected.width, expected.height]);
      const labels = new Map(project.classes.map((c) => [c.id, c.label]));
      assert.deepEqual(
        stored.boxes.map((b) => labels.get(b.classId)),
        expected.boxes.map((b) => b.label),
      );
      stored.boxes.forEach((b, i) => assert.ok(near(b.box, expected.boxes[i].box, 0.05), `${expected.name} box ${i + 1}: ${b.box} against ${expected.boxes[i].box}`));
    }
  }
  // The editor shows the first image's boxes, labelled.
  assert.equal(await page.$eval('#box-stage', (s) => Number(s.dataset.boxes)), set.train[0].boxes.length);
  assert.deepEqual(await page.$$eval('.box', (boxes) => boxes.map((b) => b.dataset.class)), set.train[0].boxes.map((b) => b.label));
});

test('a YOLO folder with a bad label line or class name is refused, and nothing is imported', async () => {
  const { context, page } = await freshApp();
  try {
    await page.setInputFiles('#yolo-input', set.broken);
    await page.waitForSelector('.notice.error', { timeout: 2 * MINUTES });
    const message = await page.textContent('.notice.error span');
    assert.match(message, /train_0002\.txt/);
    assert.match(message, /line \d/);
    assert.match(await countText(page), /^0 images/);
    assert.deepEqual((await storedProject(page))?.images ?? [], []);
    // Every class name is checked before any class is made.
    await page.click('.notice.error button');
    await page.setInputFiles('#yolo-input', set.longName);
    await page.waitForSelector('.notice.error', { timeout: 2 * MINUTES });
    assert.match(await page.textContent('.notice.error span'), /class name “b+” is too long/);
    assert.deepEqual(await page.$$eval('.detect-class .class-name', (all) => all.map((n) => n.value)), ['Object 1']);
    assert.match(await countText(page), /^0 images/);
    assert.deepEqual((await storedProject(page))?.classes.map((c) => c.label) ?? ['Object 1'], ['Object 1']);
  } finally {
    await context.close();
  }
});

test('a drop while a YOLO folder imports is refused, between the import’s steps too', async () => {
  const { context, page } = await freshApp();
  try {
    // Saving the folder's classes waits on storage: the import is between its reading and its
    // images when the drop comes.
    await holdStorage(page, 'projects');
    await page.setInputFiles('#yolo-input', set.folder);
    await page.waitForTimeout(1500);
    await dropImages(page, '#annotate', [{ images: [['dropped.png', '#c33']] }]);
    await releaseStorage(page);
    await page.waitForFunction((n) => document.getElementById('annotation-counts').textContent.startsWith(`${n} images`), SET.train + SET.val, { timeout: 2 * MINUTES });
    await page.waitForFunction(() => !document.getElementById('import-yolo').disabled);
    assert.deepEqual(await page.$$eval('.notice.error span', (all) => all.map((s) => s.textContent)), ['nothing was added while the app is busy (Adding images); drop again when it is done']);
    assert.equal((await storedProject(page)).images.filter((i) => i.name === 'dropped.png').length, 0);
  } finally {
    await context.close();
  }
});

test('boxes with the mouse: draw, move, resize by a corner, delete', async () => {
  const { context, page } = await projectWith([set.train[0].path]);
  try {
    const g = await geometry(page);
    const [ax, ay] = g.toScreen(40, 30);
    const [bx, by] = g.toScreen(160, 120);
    await page.mouse.move(ax, ay);
    await page.mouse.down();
    await page.mouse.move(bx, by, { steps: 8 });
    await page.mouse.up();
    const drawn = await storedBoxes(page, 0, (b) => b.length === 1, 'draw');
    assert.ok(near(drawn[0].box, [40, 30, 160, 120], 2 * g.scale), `drawn ${drawn[0].box}`);
    const classes = (await storedProject(page)).classes;
    assert.equal(drawn[0].classId, classes[0].id, 'the selected class');
    // Move: drag the box's middle by 30, 20 screen pixels.
    const [mx, my] = g.toScreen(100, 75);
    await page.mouse.move(mx, my);
    await page.mouse.down();
    await page.mouse.move(mx + 30, my + 20, { steps: 6 });
    await page.mouse.up();
    const moved = await storedBoxes(page, 0, (b) => b[0]?.box[0] > 45, 'move');
    const [dx, dy] = [30 * g.scale, 20 * g.scale];
    assert.ok(near(moved[0].box, [drawn[0].box[0] + dx, drawn[0].box[1] + dy, drawn[0].box[2] + dx, drawn[0].box[3] + dy], 2 * g.scale), `moved ${moved[0].box}`);
    // Resize: the bottom-right handle, out by 25, 15.
    const handle = await page.locator('.box.selected .handle.se').boundingBox();
    const [hx, hy] = [handle.x + handle.width / 2, handle.y + handle.height / 2];
    await page.mouse.move(hx, hy);
    await page.mouse.down();
    await page.mouse.move(hx + 25, hy + 15, { steps: 6 });
    await page.mouse.up();
    const resized = await storedBoxes(page, 0, (b) => b[0]?.box[2] > moved[0].box[2] + 10, 'resize');
    assert.ok(near(resized[0].box, [moved[0].box[0], moved[0].box[1], moved[0].box[2] + 25 * g.scale, moved[0].box[3] + 15 * g.scale], 2 * g.scale), `resized ${resized[0].box}`);
    await shot(page, '03-mouse-box');
    // A click beside the box deselects it; a click on it selects it; Delete removes it.
    await page.mouse.click(...g.toScreen(5, 5));
    assert.equal(await page.$eval('#box-stage', (s) => s.dataset.selected), '-1');
    await page.mouse.click(...g.toScreen((resized[0].box[0] + resized[0].box[2]) / 2, (resized[0].box[1] + resized[0].box[3]) / 2));
    assert.equal(await page.$eval('#box-stage', (s) => s.dataset.selected), '0');
    await page.keyboard.press('Delete');
    await storedBoxes(page, 0, (b) => b.length === 0, 'delete');
    assert.equal(await page.$eval('#box-stage', (s) => s.dataset.boxes), '0');
  } finally {
    await context.close();
  }
});

test('boxes with the keyboard: add, nudge, resize, class keys, Tab, Delete, next and previous image', async () => {
  const { context, page } = await projectWith([set.train[0].path, set.train[1].path]);
  try {
    await page.click('#add-class');
    await page.waitForFunction(() => document.querySelectorAll('.detect-class').length === 2);
    const [first, second] = (await storedProject(page)).classes;
    const { width, height } = await geometry(page);
    await page.focus('#box-stage');
    await page.keyboard.press('b');
    const added = await storedBoxes(page, 0, (b) => b.length === 1, 'B adds a box');
    const centre = [(width * 3) / 8, (height * 3) / 8, (width * 5) / 8, (height * 5) / 8];
    assert.ok(near(added[0].box, centre, 0.01), `added ${added[0].box}`);
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Shift+ArrowDown');
    await page.keyboard.press('Alt+ArrowRight');
    await page.keyboard.press('Alt+ArrowUp');
    await page.keyboard.press('2');
    const edited = await storedBoxes(page, 0, (b) => b[0]?.classId === second.id, 'keys');
    assert.ok(near(edited[0].box, [centre[0] + 2, centre[1] + 10, centre[2] + 3, centre[3] + 9], 0.01), `nudged and resized ${edited[0].box}`);
    assert.match(await page.textContent('#box-announcer'), /Box 1 of 1: Object 2/);
    // Escape, then Tab selects the box again; Delete removes it.
    await page.keyboard.press('Escape');
    assert.equal(await page.$eval('#box-stage', (s) => s.dataset.selected), '-1');
    await page.keyboard.press('Tab');
    assert.equal(await page.$eval('#box-stage', (s) => s.dataset.selected), '0');
    await page.keyboard.press('Backspace');
    await storedBoxes(page, 0, (b) => b.length === 0, 'Backspace');
    // With nothing selected, 1 picks the class of the next box, and arrows or N/P change image.
    await page.keyboard.press('1');
    await page.keyboard.press('B'); // Caps Lock on
    const again = await storedBoxes(page, 0, (b) => b.length === 1, 'B again');
    assert.equal(again[0].classId, first.id);
    await page.keyboard.press('Escape');
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 2 of 2'));
    await page.keyboard.press('P');
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 1 of 2'));
    await page.keyboard.press('n');
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 2 of 2'));
    // Tab with no box moves the focus on, out of the editor.
    await page.focus('#box-stage');
    await page.keyboard.press('Tab');
    assert.notEqual(await page.evaluate(() => document.activeElement?.id), 'box-stage');
    // The controls have names.
    const unnamed = await page.$$eval('#annotate button, #annotate input, #annotate select, #box-stage', (all) =>
      all.filter((e) => !e.hidden && e.type !== 'file' && !(e.getAttribute('aria-label') || e.textContent.trim() || e.labels?.length)).map((e) => e.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unnamed, []);
  } finally {
    await context.close();
  }
});


test('box edits made while pictures load or saves wait stay on their image, and the editor shows what is stored', async () => {
  const { context, page } = await projectWith([set.train[0].path, set.train[1].path]);
  const shownBoxes = () => page.$eval('#box-stage', (s) => Number(s.dataset.boxes));
  try {
    await page.focus('#box-stage');
    await page.keyboard.press('b');
    await storedBoxes(page, 0, (b) => b.length === 1, 'the first box');
    // The next picture cannot be read for a while: a box added meanwhile is on the image shown.
    await holdStorage(page, 'images');
    await page.keyboard.press('n');
    await page.keyboard.press('b');
    assert.match(await page.textContent('#image-position'), /^Image 1 of 2/, 'the toolbar names the picture on screen');
    await releaseStorage(page);
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 2 of 2'));
    await storedBoxes(page, 0, (b) => b.length === 2, 'both boxes on the first image');
    assert.deepEqual((await storedProject(page)).images[1].boxes, [], 'the second image has none');
    assert.equal(await shownBoxes(), 0);
    // Boxes still being saved when the user steps away and back (one drawn before, one after)
    // come back with the image.
    await holdStorage(page, 'projects');
    await page.keyboard.press('b');
    await page.keyboard.press('p');
    await page.keyboard.press('n');
    await page.waitForTimeout(300); // the second image's picture is read: it waits on the first save
    await page.keyboard.press('b');
    await releaseStorage(page);
    await storedBoxes(page, 1, (b) => b.length === 2, 'both boxes on the second image');
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 2 of 2'));
    await page.waitForTimeout(300);
    assert.equal(await shownBoxes(), 2, 'the editor shows the stored boxes');
  } finally {
    await context.close();
  }
});

test('on a phone, a finger draws a box and moves it (touch pointer events) without scrolling the page', async () => {
  const { context, page } = await projectWith([set.train[0].path], { hasTouch: true, isMobile: true, viewport: { width: 390, height: 844 } });
  try {
    await page.evaluate(() => {
      globalThis.pointerTypes = [];
      document.addEventListener('pointerdown', (e) => globalThis.pointerTypes.push(e.pointerType), true);
    });
    await page.locator('#box-stage').scrollIntoViewIfNeeded();
    const scrolled = await page.evaluate(() => scrollY);
    const g = await geometry(page);
    const cdp = await context.newCDPSession(page);
    const swipe = async ([x0, y0], [x1, y1]) => {
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [{ x: x0, y: y0 }] });
      for (let i = 1; i <= 8; i++) {
        await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [{ x: x0 + ((x1 - x0) * i) / 8, y: y0 + ((y1 - y0) * i) / 8 }] });
      }
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    };
    await swipe(g.toScreen(50, 40), g.toScreen(150, 140));
    const drawn = await storedBoxes(page, 0, (b) => b.length === 1, 'touch draw');
    assert.ok(near(drawn[0].box, [50, 40, 150, 140], 2 * g.scale), `drawn ${drawn[0].box}`);
    await swipe(g.toScreen(100, 90), g.toScreen(130, 100));
    const moved = await storedBoxes(page, 0, (b) => b[0]?.box[0] > 60, 'touch move');
    assert.ok(near(moved[0].box, [80, 50, 180, 150], 2 * g.scale), `moved ${moved[0].box}`);
    assert.ok((await page.evaluate(() => globalThis.pointerTypes)).every((t) => t === 'touch'), 'the pointers were touches');
    assert.equal(await page.evaluate(() => scrollY), scrolled, 'the page did not scroll');
    assert.deepEqual(await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]), [390, 390], 'everything fits the width');
  } finally {
    await context.close();
  }
});

/** Stored image records of the detection project (its images' blobs and thumbnails). */
const storedImageCount = (page) =>
  page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('graft');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const count = db.transaction('images').objectStore('images').index('project').count('detect-project');
          count.onerror = () => reject(count.error);
          count.onsuccess = () => {
            db.close();
            resolve(count.result);
          };
        };
      }),
  );

test('a dropped folder of images is added, a second drop meanwhile is refused; a change storage refuses is not shown, and a left-over image is swept', async () => {
  const { context, page } = await freshApp();
  try {
    // A folder without data.yaml, dropped twice at once: the second is refused while the first
    // is read.
    const photos = { folder: 'photos', images: [['a.png', '#c33'], ['b.png', '#3c3']] };
    await dropImages(page, '#annotate', [photos, photos]);
    await page.waitForFunction(() => document.getElementById('annotation-counts').textContent.startsWith('2 images') && document.querySelector('.notice.error'));
    assert.deepEqual(
      await page.$$eval('.notice.error span', (all) => all.map((s) => s.textContent)),
      ['nothing was added while the app is busy (Reading the dropped files); drop again when it is done'],
      'only the second drop was refused (a plain folder is not a YOLO one)',
    );
    await page.waitForFunction(() => !document.getElementById('add-images').disabled);
    assert.deepEqual((await storedProject(page)).images.map((i) => [i.name, i.source]), [['a.png', 'photos/a.png'], ['b.png', 'photos/b.png']]);
    await page.waitForFunction(() => document.querySelector('.box-picture').complete && document.querySelector('.box-picture').naturalWidth > 0);
    // Storage refuses every save of the project: each change fails, and the page shows the
    // project as saved, as a reload would.
    await page.evaluate(() => {
      const { put, delete: remove } = IDBObjectStore.prototype;
      const refused = () => new DOMException('refused by the test', 'QuotaExceededError');
      IDBObjectStore.prototype.put = function (...args) {
        if (globalThis.refuseSaves && this.name === 'projects') throw refused();
        return put.apply(this, args);
      };
      IDBObjectStore.prototype.delete = function (...args) {
        if (globalThis.refuseDeletes && this.name === 'images') throw refused();
        return remove.apply(this, args);
      };
      globalThis.refuseSaves = true;
    });
    const errors = () => page.$$eval('.notice.error span', (all) => all.length);
    const refusedNow = async (action, what) => {
      const before = await errors();
      await action();
      await page.waitForFunction((n) => document.querySelectorAll('.notice.error span').length > n, before);
      assert.match(await page.$eval('.notice.error:last-child span', (s) => s.textContent), /storage is full/, what);
    };
    await refusedNow(async () => {
      await page.focus('#box-stage');
      await page.keyboard.press('b');
    }, 'a box');
    await page.waitForFunction(() => document.getElementById('box-stage').dataset.boxes === '0');
    await refusedNow(() => page.selectOption('#image-split', 'val'), 'held out');
    assert.equal(await page.$eval('#image-split', (s) => s.value), 'train');
    await refusedNow(async () => {
      await page.fill('.detect-class .class-name', 'renamed');
      await page.press('.detect-class .class-name', 'Enter');
    }, 'a rename');
    assert.equal(await page.$eval('.detect-class .class-name', (n) => n.value), 'Object 1');
    await refusedNow(() => page.click('#add-class'), 'a class');
    await refusedNow(() => page.click('#remove-image'), 'an image removed');
    assert.match(await countText(page), /^2 images \(2 for training, 0 held out\) with 0 boxes/);
    assert.deepEqual(await page.$$eval('.detect-class', (all) => all.length), 1);
    // Saved again: the next change is kept.
    await page.evaluate(() => (globalThis.refuseSaves = false));
    await page.focus('#box-stage');
    await page.keyboard.press('b');
    await storedBoxes(page, 0, (b) => b.length === 1, 'a box once storage takes it');
    // An image taken out of the project whose record could not be deleted is swept on reload.
    await page.evaluate(() => (globalThis.refuseDeletes = true));
    await page.click('#remove-image');
    await page.waitForFunction(() => document.getElementById('annotation-counts').textContent.startsWith('1 image '));
    assert.equal(await storedImageCount(page), 2);
    await openApp(page);
    assert.match(await countText(page), /^1 image /);
    assert.equal(await storedImageCount(page), 1);
  } finally {
    await context.close();
  }
});

test('after training, changed boxes, an image held out and a renamed class all reach the next training', async () => {
  const { context, page } = await projectWith([set.train[0].path, set.train[1].path]);
  const trainOnce = async () => {
    await page.waitForFunction(() => !document.getElementById('train').disabled);
    // A double click trains once: the first disables Train before anything is awaited.
    await page.$eval('#train', (button) => {
      button.click();
      button.click();
    });
    await page.waitForFunction(() => /^Trained/.test(document.getElementById('train-status').textContent) || document.querySelector('.notice.error'), null, { timeout: 2 * MINUTES });
    const error = await page.$('.notice.error span');
    if (error) assert.fail(`training failed: ${await error.textContent()}`);
    return storedProject(page);
  };
  try {
    await page.click('.advanced summary');
    await page.fill('#option-epochs', '1');
    await page.selectOption('#option-inputSize', '128');
    await page.focus('#box-stage');
    await page.keyboard.press('b');
    await page.keyboard.press('Escape');
    await page.keyboard.press('n');
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 2 of 2'));
    await page.keyboard.press('b');
    await storedBoxes(page, 1, (b) => b.length === 1, 'second box');
    let project = await trainOnce();
    assert.deepEqual([project.report.heldOut, project.report.evaluation], [0, null], 'nothing held out yet');
    // The engine holds both images: one is given again with its box moved, the other held out.
    await page.focus('#box-stage');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    await page.keyboard.press('ArrowRight');
    await storedBoxes(page, 1, (b) => b[0].box[0] > project.images[1].boxes[0].box[0], 'moved');
    await page.keyboard.press('Escape');
    await page.keyboard.press('p');
    await page.waitForFunction(() => document.getElementById('image-position').textContent.startsWith('Image 1 of 2'));
    await page.selectOption('#image-split', 'val');
    await page.waitForFunction(() => /1 for training, 1 held out/.test(document.getElementById('annotation-counts').textContent));
    project = await trainOnce();
    assert.equal(project.report.heldOut, 1);
    assert.deepEqual([project.report.evaluation.images, project.report.evaluation.instances], [1, 1]);
    assert.equal(project.report.training.history[0].valMAP50 === null, false, 'the held-out image scored the epoch');
    // A box added to the held-out image, its use unchanged: the engine scores both boxes (it
    // would score one if the image it holds were not given again).
    await page.focus('#box-stage');
    await page.keyboard.press('Escape');
    await page.keyboard.press('b');
    await page.keyboard.press('Shift+ArrowLeft');
    await page.keyboard.press('Shift+ArrowUp');
    await storedBoxes(page, 0, (b) => b.length === 2 && b[1].box[0] < b[0].box[0], 'a second box on the held-out image');
    project = await trainOnce();
    assert.deepEqual([project.report.evaluation.images, project.report.evaluation.instances], [1, 2]);
    // A renamed class: the detector learns the new name only.
    await page.fill('.detect-class .class-name', 'thing');
    await page.press('.detect-class .class-name', 'Enter');
    await page.waitForFunction(() => document.querySelector('.box')?.dataset.class === 'thing');
    project = await trainOnce();
    assert.deepEqual(project.report.evaluation.perClass.map((c) => c.name), ['thing']);
  } finally {
    await context.close();
  }
});

test('training shows live loss and held-out mAP curves, and Stop keeps a detector', async () => {
  const trained = await ensureTrained();
  assert.match(trained.stopped, /\(stopped\)/);
  const { history, plan } = trained.project.report.training;
  assert.equal(plan.epochs, EPOCHS);
  assert.equal(plan.inputSize, INPUT_SIZE);
  assert.equal(history.length, EPOCHS);
  // Drawn as training went, an epoch at a time.
  for (const key of ['loss', 'map']) {
    const points = trained.chartPoints[key].filter((n) => n > 0);
    assert.deepEqual([...new Set(points)], Array.from({ length: EPOCHS }, (_, i) => i + 1), `${key} chart points as they came: ${trained.chartPoints[key]}`);
  }
  assert.ok(history.every((e) => Number.isFinite(e.loss) && Number.isFinite(e.valMAP50)), 'loss and valMAP50 every epoch');
  assert.ok(history.at(-1).loss < history[0].loss, `the loss went down: ${history.map((e) => e.loss.toFixed(3))}`);
  assert.ok(trained.fps > 20, `the page stayed responsive: ${trained.fps.toFixed(1)} frames/s`);
  assert.match(trained.summary, new RegExp(`^Trained in .*: ${EPOCHS} of ${EPOCHS} epochs at ${INPUT_SIZE} px`));
  // The time left is estimated from the second step on (one step gives no interval to time).
  const steps = trained.statusTexts.filter((text) => /· step \d+ of/.test(text));
  assert.match(steps[0], /· step 1 of \d+$/);
  assert.ok(steps.slice(1).every((text) => /· step \d+ of \d+ · about .+ left$/.test(text)), steps.join('\n'));
  // Mirroring is the app's default (the engine's is off), kept with the project's options.
  assert.equal(await main.page.isChecked('#option-flip'), true);
  assert.deepEqual(trained.project.options, { epochs: EPOCHS, inputSize: INPUT_SIZE, flip: true, fineTuneBlocks: FINE_TUNE_BLOCKS });
  assert.equal(trained.project.report.training.plan.augment.flip, true, 'the engine was asked to mirror');
  assert.equal(trained.project.report.training.plan.fineTuneBlocks, FINE_TUNE_BLOCKS, 'the engine was asked to fine-tune');
});

test('results: mAP50, mAP50-95, precision, recall, AP per class and the precision-recall curves', async () => {
  const { project } = await ensureTrained();
  const { page } = main;
  const { evaluation } = project.report;
  // The training's own scoring of its last epoch, kept once.
  assert.equal(evaluation.mAP50, project.report.training.history.at(-1).valMAP50);
  assert.equal(project.report.training.evaluation, undefined);
  console.log(`held-out mAP50 ${evaluation.mAP50.toFixed(4)}, mAP50-95 ${evaluation.mAP50_95.toFixed(4)}; last epoch's valMAP50 ${project.report.training.history.at(-1).valMAP50.toFixed(4)}`);
  assert.ok(evaluation.mAP50 > MIN_MAP50, `mAP50 ${evaluation.mAP50}`);
  assert.equal(evaluation.images, SET.val);
  const shown = await page.$$eval('#results .metric', (all) => Object.fromEntries(all.map((m) => [m.dataset.metric, m.querySelector('.value').textContent])));
  assert.deepEqual(shown, {
    map50: `${(evaluation.mAP50 * 100).toFixed(1)}%`,
    'map50-95': `${(evaluation.mAP50_95 * 100).toFixed(1)}%`,
    precision: `${(evaluation.precision * 100).toFixed(1)}%`,
    recall: `${(evaluation.recall * 100).toFixed(1)}%`,
  });
  const rows = await page.$$eval('#per-class-ap tbody tr', (all) => all.map((r) => r.dataset.class));
  assert.deepEqual(rows.sort(), [...CLASSES].sort());
  // One curve per class with objects held out, each named in the legend.
  const pr = await page.$eval('.chart[data-metric="pr"]', (chart) => ({ hidden: chart.hidden, points: Number(chart.dataset.points), canvas: Boolean(chart.querySelector('canvas')), legend: Array.from(chart.querySelectorAll('.u-legend .u-series'), (s) => s.textContent.trim()) }));
  const curves = evaluation.perClass.filter((c) => c.precisionRecall).map((c) => c.name);
  assert.deepEqual({ ...pr, legend: pr.legend.length }, { hidden: false, points: 101, canvas: true, legend: curves.length });
  assert.ok(curves.length >= 2 && curves.every((name, i) => pr.legend[i].startsWith(name)), `${pr.legend} for ${curves}`);
  for (const c of evaluation.perClass.filter((c) => c.precisionRecall)) {
    assert.equal(c.precisionRecall.length, 101);
    const mean = c.precisionRecall.reduce((a, b) => a + b, 0) / 101;
    assert.ok(Math.abs(mean - c.ap50) < 1e-9, `${c.name}: the curve averages to AP50`);
  }
});

test('try it: a held-out image gets its objects drawn with class and score; the slider filters them', async () => {
  await ensureTrained();
  const { page } = main;
  const probe = set.val[0];
  const count = await tryImage(page, probe.path);
  assert.ok(count >= 1, 'objects found');
  const canvas = await page.$eval('#found-canvas', (c) => [c.width, c.height]);
  assert.deepEqual(canvas, [probe.width, probe.height]);
  const found = await page.$$eval('#found li', (items) => items.map((li) => li.textContent));
  assert.match(found[0], /^(trouser|sneaker|bag) \d+(\.\d)?% at \d+, \d+, \d+, \d+$/);
  const best = Math.max(
    ...found.map((text) => {
      const [label, , , ...corners] = text.replace(/,/g, '').split(' ');
      return Math.max(0, ...probe.boxes.filter((b) => b.label === label).map((b) => iou(b.box, corners.map(Number))));
    }),
  );
  assert.ok(best > 0.5, `a found box matches a true one: IoU ${best} (${found.join('; ')})`);
  const all = await setMinScore(page, 5);
  const few = await setMinScore(page, 95);
  assert.ok(all >= count && few <= count, `5%: ${all}, 25%: ${count}, 95%: ${few}`);
  await setMinScore(page, 25);
  await shot(page, '04-try-it');
});

test('try it live: webcam frames get their boxes drawn over them; a double click opens one camera, and Stop closes it', async () => {
  await ensureTrained();
  const { page } = main;
  await page.evaluate(() => delete document.querySelector('#try .preview').dataset.frames);
  await keepCameraStreams(page);
  await page.$eval('#live-webcam', (button) => {
    button.click();
    button.click(); // while the camera opens
  });
  await page.waitForFunction(() => Number(document.querySelector('#try .preview').dataset.frames) >= 3, null, { timeout: 2 * MINUTES });
  const live = await page.$eval('#try .preview', (p) => ({ video: Boolean(p.querySelector('video')), size: [p.querySelector('canvas').width, p.querySelector('video').videoWidth] }));
  assert.ok(live.video);
  assert.equal(live.size[0], live.size[1], 'the canvas shows the whole frame');
  await page.click('#live-webcam');
  assert.equal(await page.getAttribute('#live-webcam', 'aria-pressed'), 'false');
  assert.deepEqual(await cameraTrackStates(page), [['ended']], 'one camera was opened, and it is off');
});

test('a reload restores images, boxes, classes, the detector and its results', async () => {
  const { project } = await ensureTrained();
  const { page } = main;
  const before = { counts: await countText(page), map50: await page.textContent('#results [data-metric="map50"] .value') };
  await timed('reload with the project restored', () => openApp(page));
  assert.equal(await countText(page), before.counts);
  assert.equal(await page.textContent('#results [data-metric="map50"] .value'), before.map50);
  const restored = await storedProject(page);
  assert.deepEqual(restored.images, project.images);
  assert.match(await page.textContent('#train-status'), /^Last training: Trained/);
  assert.equal(await page.$eval('.chart[data-metric="loss"]', (c) => c.dataset.points), String(EPOCHS));
  assert.equal(await page.$eval('#box-stage', (s) => s.dataset.boxes), String(set.train[0].boxes.length));
  assert.ok((await tryImage(page, set.val[0].path)) >= 1, 'the restored detector finds objects');
});

test('export: the downloaded detector is the file the CLI reads, and it finds the objects', async () => {
  const { path, filename } = await ensureExported();
  assert.equal(filename, 'graft-detector.safetensors');
  assert.equal(modelHeader(readFileSync(path)).info.fineTuned.blocks, FINE_TUNE_BLOCKS, 'the tuned blocks are in the file');
  const probe = set.val[0];
  const [result] = JSON.parse(graft(['predict', '--model', path, '--json', probe.path]));
  assert.ok(result.detections.length >= 1, JSON.stringify(result));
  const best = Math.max(0, ...result.detections.flatMap((d) => probe.boxes.filter((b) => b.label === d.label).map((b) => iou(b.box, d.box))));
  assert.ok(best > 0.5, `the CLI finds a true box with the app's detector: IoU ${best}`);
});

test('import a model: a detector file loads into a new project and Try it uses it', async () => {
  const { path } = await ensureExported();
  const { context, page } = await freshApp();
  try {
    await page.setInputFiles('#import-model-input', path);
    await page.waitForFunction(() => globalThis.noticeLog.some((n) => /loaded/.test(n.text)) || document.querySelector('.notice.error'));
    const notice = (await page.evaluate(() => globalThis.noticeLog)).at(-1);
    const [, count, names] = notice.text.match(/(\d+) classes \(([^)]*)\)/);
    assert.equal(count, '3');
    assert.deepEqual(names.split(', ').sort(), [...CLASSES].sort());
    assert.ok((await tryImage(page, set.val[0].path)) >= 1, 'the imported detector finds objects');
  } finally {
    await context.close();
  }
});

test('privacy: every request of every page and worker went to the page’s own server, none sent data', async () => {
  // Alone, this test runs the flow itself: load, import, train, detect.
  await ensureTrained();
  await tryImage(main.page, set.val[1].path);
  app.assertPrivate({ minRequests: 10, isTestImage: (url) => url.includes('graft-app-detect-') });
});
