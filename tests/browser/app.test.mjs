// The web app end to end in headless Chromium, as a visitor uses it: classes, the chest X-ray
// folder through the folder input, webcam capture, removing an image, training with the
// regularisation path drawn live, results, try it, export and re-import, reload, projects saved
// by the previous version, offline, delete all, and the medical demo. Every request of every
// page, worker and service worker of the file is recorded and must stay on the page's own
// server. Screenshots of each main state go to test-artifacts/app/ (not committed).
//
// Each test runs alone (`node --test --test-name-pattern '<name>' tests/browser/app.test.mjs`)
// and in any order: what a test needs is set up by memoised helpers (`ensureImported()`,
// `ensureTrained()`, ...) that do the work once per run of the file and return what they saw.
// The shared project ("main") is only ever added to; tests that delete or remove things work in
// a fresh browser context (their own storage) of their own.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';
import { GRAFT_BIN, WEIGHTS_FILE, XRAY_DIR } from './fixtures.mjs';
import { MINUTES, cameraTrackStates, countFrames, dropImages, framesPerSecond, keepCameraStreams, once, useApp } from './app-harness.mjs';

const GENERAL = '/?backend=cpu';
const HELD_BACK_PER_CLASS = 2;
/** The medical demo's run uses a slice of the folder: the general flow already covers scale. */
const MEDICAL_PER_CLASS = 40;
/** Images per class for the tests that remove things: more than the 12 thumbnails shown. */
const SMALL_PER_CLASS = 14;
/** This machine is slow and busy: waits are long, and only a failure waits that long. */
const LONG = 1_500_000;

const app = useApp({ artifacts: 'app', path: GENERAL, projectId: 'my-project', title: 'app flow' });
const { timings, timed, shot, newContext, openApp, freshApp, storedProject } = app;
const folders = {};

/** Copies the X-ray folder into temporary `xrays/CLASS/` trees, holding a few images back. */
function prepareFolders() {
  const root = mkdtempSync(join(tmpdir(), 'graft-app-'));
  const heldBack = [];
  for (const [name, limit] of [['full', Infinity], ['medical', MEDICAL_PER_CLASS], ['small', SMALL_PER_CLASS]]) {
    for (const label of ['NORMAL', 'PNEUMONIA']) {
      const files = readdirSync(join(XRAY_DIR, label)).sort();
      const dir = join(root, name, 'xrays', label);
      mkdirSync(dir, { recursive: true });
      for (const file of files.slice(0, -HELD_BACK_PER_CLASS).slice(0, limit)) copyFileSync(join(XRAY_DIR, label, file), join(dir, file));
      if (name === 'full') heldBack.push(...files.slice(-HELD_BACK_PER_CLASS).map((file) => ({ label, path: join(XRAY_DIR, label, file) })));
    }
  }
  writeFileSync(join(root, 'full', 'xrays', 'README.txt'), 'not in a class folder: ignored');
  // A class folder whose name is too long for a class (61 characters).
  const longName = `PNEUMONIA-${'x'.repeat(51)}`;
  mkdirSync(join(root, 'long', 'xrays', longName), { recursive: true });
  mkdirSync(join(root, 'long', 'xrays', 'NORMAL'), { recursive: true });
  const first = readdirSync(join(XRAY_DIR, 'NORMAL')).sort()[0];
  copyFileSync(join(XRAY_DIR, 'NORMAL', first), join(root, 'long', 'xrays', longName, first));
  copyFileSync(join(XRAY_DIR, 'NORMAL', first), join(root, 'long', 'xrays', 'NORMAL', first));
  const counts = (name) => Object.fromEntries(['NORMAL', 'PNEUMONIA'].map((label) => [label, readdirSync(join(root, name, 'xrays', label)).length]));
  return {
    root,
    heldBack,
    full: join(root, 'full', 'xrays'),
    fullCounts: counts('full'),
    medical: join(root, 'medical', 'xrays'),
    small: join(root, 'small', 'xrays'),
    smallCounts: counts('small'),
    long: join(root, 'long', 'xrays'),
    longName,
  };
}

/** Counts shown on the class cards: `{ label: count }`. */
function classCounts(page) {
  return page.$$eval('.class-card', (cards) =>
    Object.fromEntries(cards.map((card) => [card.querySelector('.class-name').value, Number.parseInt(card.querySelector('.count').textContent, 10)])),
  );
}

/** The card of the class named `label`. */
async function card(page, label) {
  const index = await page.$$eval('.class-card .class-name', (names, label) => names.findIndex((n) => n.value === label), label);
  assert.ok(index >= 0, `no class named ${label}`);
  return page.locator('.class-card').nth(index);
}

async function deleteClass(page, label) {
  const before = await page.$$eval('.class-card', (cards) => cards.length);
  await (await card(page, label)).locator('button.remove-class').click();
  await page.waitForFunction((n) => document.querySelectorAll('.class-card').length === n - 1, before);
}

/** Waits until the cards show `counts` (and only those classes) and nothing is running. */
async function waitForCounts(page, counts, timeout = LONG) {
  await page.waitForFunction(
    (want) => {
      const shown = Object.fromEntries(Array.from(document.querySelectorAll('.class-card'), (c) => [c.querySelector('.class-name').value, Number.parseInt(c.querySelector('.count').textContent, 10)]));
      return Object.entries(want).every(([label, n]) => shown[label] === n) && !document.querySelector('#import-folder').disabled;
    },
    counts,
    { timeout },
  );
}

/**
 * Every notice a page shows (they fade) is kept in `globalThis.noticeLog` from its start (see
 * `newContext`); this empties the log, to see what comes next.
 */
async function recordNotices(page) {
  await page.evaluate(() => globalThis.noticeLog.splice(0));
}

async function dismissNotices(page) {
  for (const button of await page.$$('.notice button[aria-label="Dismiss message"]')) await button.click().catch(() => {});
}

/** Stored image records by id (`null` for missing ones), without their blobs. */
function storedImages(page, ids) {
  return page.evaluate(
    (ids) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('graft');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const store = db.transaction('images').objectStore('images');
          const out = [];
          ids.forEach((id, i) => {
            const get = store.get(id);
            get.onerror = () => reject(get.error);
            get.onsuccess = () => {
              const r = get.result;
              out[i] = r ? { id: r.id, name: r.name, hash: r.hash ?? null, classId: r.classId } : null;
              if (out.filter((x) => x !== undefined).length === ids.length) {
                db.close();
                resolve(out);
              }
            };
          });
          if (!ids.length) resolve([]);
        };
      }),
    ids,
  );
}

async function predictFile(page, file) {
  await page.evaluate(() => delete document.getElementById('predictions').dataset.top);
  await page.setInputFiles('#try-input', file);
  await page.waitForFunction(() => document.getElementById('predictions').dataset.top, null, { timeout: 5 * MINUTES });
  return page.$eval('#predictions', (list) => ({
    top: list.dataset.top,
    bars: Array.from(list.querySelectorAll('li'), (li) => [li.querySelector('.label').textContent, li.querySelector('.score').textContent]),
  }));
}

/** Records the training status lines and the charts' point counts as they change. */
async function watchTraining(page) {
  await page.evaluate(() => {
    globalThis.statusLines = [];
    globalThis.chartPoints = { cv: [], loss: [] };
    const status = document.getElementById('train-status');
    new MutationObserver(() => globalThis.statusLines.push(status.textContent)).observe(status, { childList: true, characterData: true, subtree: true });
    for (const key of ['cv', 'loss']) {
      const chart = document.querySelector(`.chart[data-metric="${key}"]`);
      new MutationObserver(() => globalThis.chartPoints[key].push(Number(chart.dataset.points))).observe(chart, { attributes: true, attributeFilter: ['data-points'] });
    }
  });
}

async function trainAndWait(page) {
  await dismissNotices(page);
  await page.waitForFunction(() => !document.getElementById('train').disabled, null, { timeout: LONG });
  await page.click('#train');
  await page.waitForFunction(() => /^Trained/.test(document.getElementById('train-status').textContent) || document.querySelector('.notice.error'), null, { timeout: LONG });
  const error = await page.$('.notice.error');
  if (error) assert.fail(`training failed: ${await error.textContent()}`);
}

// ---- The shared project: loaded, imported, trained, exported, each once ----

let main;

/** The main context's first load of the general app (cold: engine and weights download). */
const ensureLoaded = once(async () => {
  const context = await newContext();
  const page = await context.newPage();
  main = { context, page };
  await timed('load (cold: engine and weights download)', () => openApp(page, GENERAL));
  await shot(page, '01-empty');
  return {
    page,
    backend: await page.textContent('#backend'),
    engineStatus: await page.textContent('#engine-status'),
    counts: await classCounts(page),
    csp: await page.$eval('meta[http-equiv="Content-Security-Policy"]', (m) => m.content),
  };
});

/** The main page, on the general app (reopened if a test went elsewhere). */
async function generalPage() {
  const { page } = await ensureLoaded();
  if (page.url() !== `${app.server.origin}${GENERAL}` || !(await page.$('body[data-ready]'))) await openApp(page, GENERAL);
  return page;
}

/**
 * The X-ray folder imported into the main project through the folder input, and the preset's
 * empty classes deleted. Returns the frame rate during the import and the thumbnails drawn.
 */
const ensureImported = once(async () => {
  const page = await generalPage();
  const expected = folders.fullCounts;
  // Count animation frames meanwhile: the page must stay responsive while the engine works.
  await countFrames(page);
  await recordNotices(page);
  await timed(`import folder (${expected.NORMAL + expected.PNEUMONIA} X-rays, decode + embed on CPU)`, async () => {
    await page.setInputFiles('#folder-input', folders.full);
    await waitForCounts(page, expected);
  });
  const fps = await framesPerSecond(page);
  timings['main thread frames per second during import'] = Number(fps.toFixed(1));
  const notices = await page.evaluate(() => globalThis.noticeLog);
  for (const [label, count] of Object.entries(await classCounts(page))) if (count === 0 && !(label in expected)) await deleteClass(page, label);
  const thumbs = await page.$$eval('.class-card', (cards) => cards.map((c) => c.querySelectorAll('.thumbs img').length));
  const more = await page.$$eval('.thumbs .more', (items) => items.map((li) => li.textContent));
  await shot(page, '03-classes');
  return { expected, fps, notices, thumbs, more };
});

/** The main project trained with the app's defaults (head only). */
const ensureTrained = once(async () => {
  await ensureImported();
  const page = await generalPage();
  await watchTraining(page);
  await timed('train (head: cross-validated L2 path + final solve, CPU)', () => trainAndWait(page));
  const state = await page.evaluate(() => ({ statusLines: globalThis.statusLines, chartPoints: globalThis.chartPoints }));
  const project = await storedProject(page);
  await shot(page, '04-trained');
  return { ...state, report: project.report, project, summary: await page.textContent('#train-status') };
});

/** The trained model downloaded, and the CLI's top class for each held-back image with it. */
const ensureExported = once(async () => {
  await ensureTrained();
  const page = await generalPage();
  const download = await timed('export model', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-model')]);
    return download;
  });
  const path = join(folders.root, 'model.safetensors');
  await download.saveAs(path);
  const cli = JSON.parse(
    execFileSync(GRAFT_BIN, ['predict', '--weights', WEIGHTS_FILE, '--model', path, '--json', ...folders.heldBack.map((h) => h.path)], { encoding: 'utf8' }),
  );
  return { path, filename: download.suggestedFilename(), cliTop: cli.map((entry) => entry.predictions[0].label) };
});

before(() => {
  Object.assign(folders, prepareFolders());
});

test('the app loads, says where it runs, and starts with two empty classes', async () => {
  const loaded = await ensureLoaded();
  assert.equal(loaded.backend, 'CPU');
  assert.match(loaded.engineStatus, /Ready/);
  assert.deepEqual(loaded.counts, { 'Class 1': 0, 'Class 2': 0 });
  assert.match(loaded.csp, /default-src 'none'/);
  assert.match(loaded.csp, /connect-src 'self'/);
});

test('classes: rename, add, refuse a duplicate name, delete', async () => {
  const { context, page } = await freshApp();
  try {
    await page.click('#train');
    await page.waitForSelector('.notice.error');
    assert.match(await page.textContent('.notice.error'), /add images to at least two classes/);
    await page.click('.notice.error button');
    const names = page.locator('.class-name');
    await names.nth(0).fill('NORMAL');
    await names.nth(0).press('Enter');
    await names.nth(1).fill('PNEUMONIA');
    await names.nth(1).press('Tab');
    await page.click('#add-class');
    await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 3);
    await names.nth(2).fill('NORMAL');
    await names.nth(2).press('Enter');
    await page.waitForSelector('.notice.error');
    assert.match(await page.textContent('.notice.error'), /already a class named “NORMAL”/);
    await page.click('.notice.error button');
    await page.waitForFunction(() => document.querySelectorAll('.class-name')[2].value === 'Class 3');
    assert.deepEqual(await classCounts(page), { NORMAL: 0, PNEUMONIA: 0, 'Class 3': 0 });
    await deleteClass(page, 'Class 3');
    assert.deepEqual(await classCounts(page), { NORMAL: 0, PNEUMONIA: 0 });
    // The names are stored: a reload shows them.
    await openApp(page, GENERAL);
    assert.deepEqual(await classCounts(page), { NORMAL: 0, PNEUMONIA: 0 });
  } finally {
    await context.close();
  }
});

test('webcam: holding the record button captures frames into a class (it waits while they are added); a double click opens one camera', async () => {
  const { context, page } = await freshApp();
  try {
    await page.click('#add-class');
    await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 3);
    const webcamCard = page.locator('.class-card').nth(2);
    await keepCameraStreams(page);
    await webcamCard.locator('button.webcam').evaluate((button) => {
      button.click();
      button.click(); // while the camera opens
    });
    const record = webcamCard.locator('button.record');
    await record.waitFor();
    await page.waitForFunction(() => document.querySelector('video.camera')?.videoWidth > 0);
    // Held with the mouse, so it must be on screen (the header above it may push it down).
    await record.scrollIntoViewIfNeeded();
    const box = await record.boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.waitForTimeout(1000);
    await page.mouse.up();
    // The frames are being added: the next recording waits for them (it would run beside them).
    assert.equal(await record.isDisabled(), true, 'Hold to record is disabled while the frames are added');
    await page.waitForFunction(() => Number.parseInt(document.querySelectorAll('.class-card')[2].querySelector('.count').textContent, 10) >= 3, null, { timeout: 5 * MINUTES });
    await webcamCard.locator('.thumbs img').first().waitFor();
    await page.waitForFunction(() => !document.querySelector('button.record').disabled && !document.getElementById('train').disabled);
    await shot(page, '02-webcam');
    await webcamCard.locator('button.webcam').click();
    assert.deepEqual(await cameraTrackStates(page), [['ended']], 'one camera was opened, and it is off');
    await webcamCard.locator('button.remove-class').click();
    await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 2);
  } finally {
    await context.close();
  }
});

test('images dropped on a class are added; a second drop while they are read is refused, not run alongside', async () => {
  const { context, page } = await freshApp();
  try {
    await dropImages(page, '.class-card', [{ images: [['red.png', '#c33'], ['green.png', '#3c3']] }, { images: [['blue.png', '#33c']] }]);
    await page.waitForFunction(() => document.querySelector('.class-card .count').textContent.startsWith('2 images') && document.querySelector('.notice.error'));
    assert.deepEqual(await page.$$eval('.notice.error span', (all) => all.map((s) => s.textContent)), ['nothing was added while the app is busy (Reading the dropped files); drop again when it is done']);
    const [first] = (await storedProject(page)).classes;
    assert.equal(first.imageIds.length, 2, 'the stored class lists the first drop’s images');
  } finally {
    await context.close();
  }
});

test('a whole folder goes in through the folder input, one class per sub-folder', async () => {
  const imported = await ensureImported();
  const page = await generalPage();
  assert.ok(imported.fps > 20, `the page drew ${imported.fps.toFixed(1)} frames per second during the import`);
  assert.deepEqual(await classCounts(page), imported.expected);
  assert.ok(imported.notices.some((n) => /^\d+ images added to “NORMAL”, “PNEUMONIA”$/.test(n.text) && n.kind === 'info'), JSON.stringify(imported.notices));
  // However many images, only a bounded strip of thumbnails is drawn, with the rest counted.
  assert.ok(imported.thumbs.every((n) => n > 0 && n <= 12), `thumbnails per class: ${imported.thumbs}`);
  assert.ok(imported.more.length > 0 && imported.more.every((text) => /^\+\d+$/.test(text)), `more: ${imported.more}`);
  // The images are stored with the ids the engine knows them by and their content hashes.
  const project = await storedProject(page);
  const ids = project.classes.flatMap((c) => c.imageIds);
  assert.equal(ids.length, imported.expected.NORMAL + imported.expected.PNEUMONIA);
  const records = await storedImages(page, ids.slice(0, 20));
  assert.ok(records.every((r) => r && /^[0-9a-f]{16}$/.test(r.hash)), JSON.stringify(records.slice(0, 3)));
  const shown = await page.$$eval('.thumbs li[data-image-id]', (items) => items.map((li) => li.dataset.imageId));
  assert.ok(shown.length > 0 && shown.every((id) => ids.includes(id)), 'thumbnails are named by their image ids');
});

test('re-importing the same folder adds nothing and says the images were already there', async () => {
  await ensureImported();
  const page = await generalPage();
  const before = await classCounts(page);
  await recordNotices(page);
  await timed('re-import the same folder (hashes only: nothing to embed)', async () => {
    await page.setInputFiles('#folder-input', folders.full);
    await page.waitForFunction(() => globalThis.noticeLog.length > 0 && !document.querySelector('#import-folder').disabled, null, { timeout: LONG });
  });
  const notices = await page.evaluate(() => globalThis.noticeLog);
  assert.deepEqual(await classCounts(page), before);
  const total = folders.fullCounts.NORMAL + folders.fullCounts.PNEUMONIA;
  assert.equal(notices.length, 1, JSON.stringify(notices));
  assert.equal(notices[0].kind, 'info');
  assert.equal(notices[0].text, `Nothing new for “NORMAL”, “PNEUMONIA”: all ${total} images are already in the project`);
  assert.deepEqual(notices[0].details, [], 'the repeats are not listed one by one as errors');
  await dismissNotices(page);
});

test('a class folder whose name is too long is named, and nothing is imported', async () => {
  const page = await generalPage();
  const before = await classCounts(page);
  await recordNotices(page);
  await page.setInputFiles('#folder-input', folders.long);
  await page.waitForFunction(() => globalThis.noticeLog.length > 0, null, { timeout: 5 * MINUTES });
  const [notice] = await page.evaluate(() => globalThis.noticeLog);
  assert.equal(notice.kind, 'error');
  assert.ok(notice.text.includes(`“${folders.longName}” (61)`), notice.text);
  assert.match(notice.text, /limited to 60 characters/);
  assert.deepEqual(await classCounts(page), before);
  await dismissNotices(page);
});

test('a file that is not an image is skipped and named; nothing else changes', async () => {
  const page = await generalPage();
  const before = await classCounts(page);
  await page.locator('.class-card').nth(0).locator('input[type=file]').setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a picture') });
  await page.waitForSelector('.notice.warning details');
  assert.match(await page.textContent('.notice.warning details'), /notes\.jpg: not a usable image \(not a JPEG, PNG, WebP, GIF or BMP image\)/);
  assert.deepEqual(await classCounts(page), before);
  await dismissNotices(page);
});

test('removing one image with its thumbnail control removes it from the engine, storage and the class', async () => {
  const { context, page } = await freshApp();
  try {
    const counts = folders.smallCounts;
    await page.setInputFiles('#folder-input', folders.small);
    await waitForCounts(page, counts);
    await deleteClass(page, 'Class 1');
    await deleteClass(page, 'Class 2');
    const normal = await card(page, 'NORMAL');
    assert.equal(await normal.locator('.thumbs .more').textContent(), `+${counts.NORMAL - 12}`);
    const victim = normal.locator('.thumbs li[data-image-id]').first();
    const id = await victim.getAttribute('data-image-id');
    const name = await victim.locator('img').getAttribute('alt');
    const control = page.getByRole('button', { name: `Remove ${name}`, exact: true });
    assert.equal(await control.count(), 1, 'one labelled control per thumbnail');
    await control.click();
    await waitForCounts(page, { ...counts, NORMAL: counts.NORMAL - 1 }, 5 * MINUTES);
    await page.waitForFunction((id) => !document.querySelector(`.thumbs li[data-image-id="${id}"]`), id);
    assert.equal(await normal.locator('.thumbs img').count(), 12, 'the strip fills up again');
    assert.equal(await normal.locator('.thumbs .more').textContent(), `+${counts.NORMAL - 13}`);
    assert.equal(await page.locator(`.thumbs img[alt="${name}"]`).count(), 0);
    await shot(page, '10-removed');
    // The engine no longer holds it: training sees one image fewer, and never that one.
    await trainAndWait(page);
    const { report, classes } = await storedProject(page);
    assert.equal(report.trainImages + report.validationImages, counts.NORMAL + counts.PNEUMONIA - 1);
    assert.ok(!report.validationExamples.some((e) => e.id === id));
    assert.ok(!classes.flatMap((c) => c.imageIds).includes(id));
    // Storage no longer holds it either: after a reload it is gone, and the rest is there.
    await openApp(page, GENERAL);
    assert.deepEqual(await classCounts(page), { ...counts, NORMAL: counts.NORMAL - 1 });
    assert.deepEqual(await storedImages(page, [id]), [null]);
    assert.equal(await page.locator(`.thumbs li[data-image-id="${id}"]`).count(), 0);
    // ... and the engine restored from storage agrees: the same file can be added back.
    await recordNotices(page);
    const file = join(folders.small, 'NORMAL', name);
    await (await card(page, 'NORMAL')).locator('input[type=file]').setInputFiles(file);
    await waitForCounts(page, counts, 5 * MINUTES);
    const [added] = await page.evaluate(() => globalThis.noticeLog);
    assert.equal(added.text, '1 image added to “NORMAL”');
  } finally {
    await context.close();
  }
});

test('training shows the regularisation search live, then the results', async () => {
  const trained = await ensureTrained();
  const page = await generalPage();
  const { report } = trained;
  assert.ok(report, 'the report is stored');
  assert.equal(report.fineTune, null);
  assert.equal(report.head.l2Source, 'crossValidation');
  assert.match(trained.summary, /^Trained in .+: the head solved with L2 \S+ picked by 5-fold cross-validation, validation accuracy \d+\.\d%\.$/);
  assert.ok(await page.$eval('#train-progress', (p) => p.value === p.max && p.max > 0), 'the bar is full');
  assert.ok(await page.$eval('#fine-tune-charts', (e) => e.hidden), 'no fine-tuning curves without fine-tuning');
  const accuracy = Number.parseFloat(await page.textContent('[data-metric="accuracy"] .value'));
  assert.ok(accuracy >= 85, `validation accuracy ${accuracy}%`);
  timings['validation accuracy (%)'] = accuracy;
  const cells = await page.$$eval('#confusion tbody td', (tds) => tds.map((td) => Number(td.textContent)));
  assert.equal(cells.length, 4);
  assert.equal(cells.reduce((a, b) => a + b, 0), report.validationImages, 'the matrix counts every held-out image');
  assert.equal(report.validationImages, Math.round(0.2 * folders.fullCounts.NORMAL) + Math.round(0.2 * folders.fullCounts.PNEUMONIA));
  assert.match(await page.textContent('[data-metric="sensitivity"] .value'), /%$/);
  assert.equal(await page.locator('#map-note').count(), 0, 'the X-ray note is the medical demo\'s');
  // The misclassified images shown are exactly the report's held-out mistakes (up to 24).
  const wrong = report.validationExamples.filter((e) => e.predicted !== e.label);
  assert.equal(wrong.length, cells[1] + cells[2]);
  const shown = await page.$$eval('.mistake', (items) =>
    items.map((li) => ({ id: li.dataset.imageId, predicted: li.querySelector('strong').textContent, actual: li.querySelector('small').textContent, img: Boolean(li.querySelector('img')) })),
  );
  assert.equal(shown.length, Math.min(wrong.length, 24));
  const ids = new Set(report.validationExamples.map((e) => e.id));
  for (const mistake of shown) {
    const example = wrong.find((e) => e.id === mistake.id);
    assert.ok(example, `${mistake.id} is a held-out image the model got wrong`);
    assert.ok(ids.has(mistake.id));
    assert.equal(mistake.predicted, report.labels[example.predicted]);
    assert.equal(mistake.actual, `is ${report.labels[example.label]}`);
    assert.ok(mistake.img, 'its thumbnail, found by id');
  }
  if (wrong.length === 0) assert.match(await page.textContent('.mistakes'), /None: every held-out image was classified correctly/);
  if (wrong.length > 24) assert.equal(await page.textContent('.mistakes .more'), `+${wrong.length - 24} more`);
  // Every held-out image is one of the project's images, named by its id.
  const project = trained.project;
  const imageIds = new Set(project.classes.flatMap((c) => c.imageIds));
  assert.ok(report.validationExamples.every((e) => imageIds.has(e.id)));
});

test('while the head is searched, the status line counts the strengths and the path chart fills', async () => {
  const { statusLines, chartPoints, report } = await ensureTrained();
  const search = statusLines.filter((line) => line.startsWith('Choosing'));
  const of = report.head.search.length;
  assert.ok(of >= 2, `strengths tried: ${of}`);
  assert.ok(search.every((line) => /^Choosing the head’s regularisation · \d+ of 11$/.test(line)), search.join('\n'));
  assert.deepEqual(search, Array.from({ length: of }, (_, i) => `Choosing the head’s regularisation · ${i + 1} of 11`));
  // The chart grew one strength at a time, live.
  assert.deepEqual([...new Set(chartPoints.cv.filter((n) => n > 0))], Array.from({ length: of }, (_, i) => i + 1));
  const page = await generalPage();
  assert.equal(await page.getAttribute('.chart[data-metric="cv"]', 'data-points'), String(of));
  assert.ok(await page.locator('.chart[data-metric="cv"] canvas').count(), 'drawn by uPlot');
});

test('try it: held-back X-rays get the right top class', async () => {
  await ensureTrained();
  const page = await generalPage();
  let correct = 0;
  await timed(`predict ${folders.heldBack.length} held-back images`, async () => {
    for (const { label, path } of folders.heldBack) {
      const { top, bars } = await predictFile(page, path);
      assert.equal(bars.length, 2);
      if (top === label) correct += 1;
    }
  });
  assert.ok(correct >= folders.heldBack.length - 1, `${correct} of ${folders.heldBack.length} right`);
  // The last image is shown at its own size with the heat map of its top class over it.
  const last = folders.heldBack.at(-1).path;
  const drawn = await page.$eval('#explained', (canvas) => ({ width: canvas.width, height: canvas.height, connected: canvas.isConnected }));
  assert.ok(drawn.connected, 'the heat-map canvas is shown');
  const natural = await page.evaluate(async (bytes) => {
    const bitmap = await createImageBitmap(new Blob([new Uint8Array(bytes)]));
    return { width: bitmap.width, height: bitmap.height };
  }, Array.from(readFileSync(last)));
  assert.deepEqual({ width: drawn.width, height: drawn.height }, natural);
  const top = await page.getAttribute('#predictions', 'data-top');
  assert.match(await page.textContent('#explained-caption'), new RegExp(`^Where the evidence for “${top}” \\(\\d+\\.\\d%\\) lies`));
  // The opacity slider and the toggle redraw it: the map's colours come and go.
  const pixels = () => page.$eval('#explained', (canvas) => Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.filter((_, i) => i % 4 !== 3 && i % 997 === 0)));
  const withMap = await pixels();
  await page.$eval('#heatmap-opacity', (slider) => {
    slider.value = '0';
    slider.dispatchEvent(new Event('input'));
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const withoutMap = await pixels();
  const changed = withMap.filter((v, i) => Math.abs(v - withoutMap[i]) > 8).length;
  assert.ok(changed > withMap.length / 4, `the map changed ${changed} of ${withMap.length} samples`);
  await page.$eval('#heatmap-opacity', (slider) => {
    slider.value = '60';
    slider.dispatchEvent(new Event('input'));
  });
  await page.uncheck('#heatmap-toggle');
  await page.waitForFunction(() => document.getElementById('explained-caption').textContent === '');
  await page.check('#heatmap-toggle');
  await page.waitForFunction(() => document.getElementById('explained-caption').textContent !== '');
  // "Fine" explains the image again with the 14x14 map: another picture over the same image.
  const coarse = await pixels();
  await page.check('#heatmap-fine');
  let fineChanged = 0;
  for (let waited = 0; waited < 60_000 && fineChanged === 0; waited += 250) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const fine = await pixels();
    fineChanged = fine.filter((v, i) => Math.abs(v - coarse[i]) > 8).length;
  }
  assert.ok(fineChanged > 0, 'the fine map redraws the picture');
  await page.uncheck('#heatmap-fine');
  await shot(page, '05-try-it');
  await page.locator('#try').screenshot({ path: join(app.artifactsDir, 'try-it-heatmap.png') });
  // Live webcam (Chromium's fake camera): predictions keep coming until it is stopped.
  await page.evaluate(() => delete document.getElementById('predictions').dataset.top);
  await page.click('#try button[aria-pressed]');
  await page.waitForFunction(() => document.getElementById('predictions').dataset.top, null, { timeout: 5 * MINUTES });
  assert.equal(await page.getAttribute('#try button[aria-pressed]', 'aria-pressed'), 'true');
  await page.click('#try button[aria-pressed]');
  assert.equal(await page.getAttribute('#try button[aria-pressed]', 'aria-pressed'), 'false');
});

test('results: a misclassified image opens with the maps of the class predicted and of its true class', async () => {
  const { report } = await ensureTrained();
  const page = await generalPage();
  const wrong = report.validationExamples.filter((e) => e.predicted !== e.label);
  assert.ok(wrong.length > 0, 'the X-ray model makes mistakes on its held-out images (to open one)');
  const first = await page.$eval('.mistake', (li) => ({ predicted: li.querySelector('strong').textContent, actual: li.querySelector('small').textContent.replace(/^is /, '') }));
  await page.click('.mistake .mistake-open');
  await page.waitForFunction(() => document.querySelectorAll('#mistake-maps canvas').length === 2, null, { timeout: 5 * MINUTES });
  const maps = await page.$$eval('#mistake-maps figure', (figures) =>
    figures.map((f) => ({ label: f.querySelector('canvas').dataset.label, width: f.querySelector('canvas').width, caption: f.querySelector('figcaption').textContent })),
  );
  assert.deepEqual(maps.map((m) => m.label), [first.predicted, first.actual]);
  assert.match(maps[0].caption, new RegExp(`^predicted: ${first.predicted} \\(\\d+\\.\\d%\\)$`));
  assert.match(maps[1].caption, new RegExp(`^true class: ${first.actual} \\(\\d+\\.\\d%\\)$`));
  assert.ok(maps.every((m) => m.width > 0));
  // The two maps are different pictures: each class's evidence is somewhere else.
  const [a, b] = await page.$$eval('#mistake-maps canvas', (canvases) => canvases.map((c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 1009 === 0))));
  assert.ok(a.some((v, i) => Math.abs(v - b[i]) > 8), 'the maps of the two classes differ');
  await shot(page, '05b-mistake-maps');
});

test('export: the downloaded model is the file the CLI reads, with the same answers', async () => {
  const exported = await ensureExported();
  const page = await generalPage();
  assert.equal(exported.filename, 'graft-model.safetensors');
  const bytes = readFileSync(exported.path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  assert.equal(header.__metadata__['graft.kind'], 'model');
  for (const [i, { path }] of folders.heldBack.entries()) {
    const { top } = await predictFile(page, path);
    assert.equal(top, exported.cliTop[i], `browser and CLI agree on ${path}`);
  }
});

test('a reload finds the project intact: classes, images, model, results and charts', async () => {
  const { report } = await ensureTrained();
  const { cliTop } = await ensureExported();
  const page = await generalPage();
  const before = { counts: await classCounts(page), accuracy: await page.textContent('[data-metric="accuracy"] .value'), mistakes: await page.$$eval('.mistake', (items) => items.map((li) => li.dataset.imageId)) };
  await timed('reload (engine from cache, project from IndexedDB)', () => openApp(page, GENERAL));
  await page.waitForSelector('[data-metric="accuracy"] .value');
  assert.deepEqual(await classCounts(page), before.counts);
  assert.equal(await page.textContent('[data-metric="accuracy"] .value'), before.accuracy);
  await page.waitForFunction((n) => document.querySelectorAll('.mistake').length === n || (n === 0 && document.querySelector('.mistakes .empty')), before.mistakes.length);
  assert.deepEqual(await page.$$eval('.mistake', (items) => items.map((li) => li.dataset.imageId)), before.mistakes);
  assert.equal(await page.getAttribute('.chart[data-metric="cv"]', 'data-points'), String(report.head.search.length));
  assert.ok(await page.$eval('#fine-tune-charts', (e) => e.hidden));
  assert.match(await page.textContent('#train-status'), /^Last training: Trained in /);
  const { top } = await predictFile(page, folders.heldBack[0].path);
  assert.equal(top, cliTop[0]);
  await shot(page, '06-reloaded');
});

test('the engine dies mid-training: the app restarts it by itself, restores the project and says so', async () => {
  const { report } = await ensureTrained();
  const page = await generalPage();
  const before = await classCounts(page);
  await dismissNotices(page);
  await recordNotices(page);
  await page.click('#train');
  await page.waitForFunction(() => /Choosing|Head solved/.test(document.getElementById('train-status').textContent), null, { timeout: LONG });
  // An uncaught error in the engine's worker, as a bug or the browser reclaiming memory gives.
  const worker = page.workers().find((w) => w.url().endsWith('/pkg/worker.js'));
  assert.ok(worker, 'the engine runs in a worker');
  await worker.evaluate(() => setTimeout(() => {
    throw new Error('simulated crash');
  }, 0));
  await page.waitForFunction(() => globalThis.noticeLog.length > 0 && !document.getElementById('train').disabled, null, { timeout: LONG });
  const notices = await page.evaluate(() => globalThis.noticeLog);
  assert.equal(notices.length, 1, JSON.stringify(notices));
  assert.match(notices[0].text, /^The engine stopped \(the Graft worker failed: .*simulated crash\) and was restarted; your project was restored from this browser’s storage\.$/);
  assert.match(await page.textContent('#train-status'), /^Training stopped: the engine stopped/);
  assert.deepEqual(await classCounts(page), before);
  assert.ok(!(await page.$eval('#import-folder', (b) => b.disabled)), 'no control stays disabled');
  // The new engine holds the saved model and the images: it predicts, and it trains again.
  const { top } = await predictFile(page, folders.heldBack[0].path);
  assert.ok(report.labels.includes(top));
  await trainAndWait(page);
  await dismissNotices(page);
});

test('two tabs on one project: the second is told it is open elsewhere; taking it over stops the first', async () => {
  const { context, page } = await freshApp();
  await page.fill('.class-card >> nth=0 >> .class-name', 'First tab');
  await page.press('.class-card >> nth=0 >> .class-name', 'Enter');
  await page.waitForFunction(() => document.querySelector('.class-card .class-name').value === 'First tab');
  const second = await context.newPage();
  await second.goto(`${app.server.origin}${GENERAL}`);
  await second.waitForSelector('#open-elsewhere');
  assert.match(await second.textContent('#open-elsewhere'), /This project is open in another tab/);
  assert.equal(await second.$('body[data-ready]'), null, 'the second tab reads nothing until it takes over');
  await second.click('#use-here');
  await second.waitForSelector('body[data-ready]', { timeout: 5 * MINUTES });
  assert.equal(await second.$eval('.class-card .class-name', (input) => input.value), 'First tab');
  // The first tab let go and says so; its controls are off, so it cannot overwrite anything.
  await page.waitForFunction(() => globalThis.noticeLog.some((n) => /opened in another tab, so this one stopped/.test(n.text)));
  assert.ok(await page.$eval('#import-folder', (button) => button.disabled));
  assert.ok(await page.$eval('.class-card .class-name', (input) => input.disabled));
  // What the second tab saves is what a reload finds.
  await second.fill('.class-card >> nth=0 >> .class-name', 'Second tab');
  await second.press('.class-card >> nth=0 >> .class-name', 'Enter');
  await second.waitForFunction(() => document.querySelector('.class-card .class-name').value === 'Second tab');
  await page.close();
  await openApp(second, GENERAL);
  assert.equal(await second.$eval('.class-card .class-name', (input) => input.value), 'Second tab');
  await context.close();
});

test('a full disk: the import stops with the numbers, storage and engine agree, and nothing is imported twice later', async () => {
  const { context, page } = await freshApp();
  const total = folders.smallCounts.NORMAL + folders.smallCounts.PNEUMONIA;
  // The browser allows this site only a little more than it uses now.
  const cdp = await context.newCDPSession(page);
  const { usage } = await page.evaluate(() => navigator.storage.estimate());
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: app.server.origin, quotaSize: usage + 300_000 });
  await recordNotices(page);
  await page.setInputFiles('#folder-input', folders.small);
  await page.waitForFunction(() => globalThis.noticeLog.some((n) => n.kind === 'error') && !document.querySelector('#import-folder').disabled, null, { timeout: 5 * MINUTES });
  const notices = await page.evaluate(() => globalThis.noticeLog);
  const error = notices.find((n) => n.kind === 'error');
  // (Chromium's estimate() does not show a quota overridden for a test, so the numbers here
  // are the machine's; on a full disk they are the real ones.)
  assert.match(error.text, /could not be added to “\w+” \(\d+ images? (was|were) saved before\): this browser’s storage is full \(\d+ MB used of the \d+ MB this browser allows the site\)/);
  const partial = await classCounts(page);
  const stored = await storedProject(page);
  assert.deepEqual(Object.fromEntries(stored.classes.map((c) => [c.label, c.imageIds.length])), partial, 'what the page shows is what is stored');
  assert.ok(Object.values(partial).reduce((a, b) => a + b, 0) < total, 'the quota stopped the import');
  // With room again, importing the same folder adds exactly what is missing: the engine let go
  // of what storage could not keep.
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: app.server.origin });
  await dismissNotices(page);
  await page.setInputFiles('#folder-input', folders.small);
  await waitForCounts(page, folders.smallCounts);
  const ids = (await storedProject(page)).classes.flatMap((c) => c.imageIds);
  assert.equal(ids.length, total);
  assert.ok((await storedImages(page, ids)).every(Boolean));
  await context.close();
});

test('a reload in the middle of an import, then the same folder again: every image once, none left over', async () => {
  const { context, page } = await freshApp();
  const total = folders.smallCounts.NORMAL + folders.smallCounts.PNEUMONIA;
  await page.setInputFiles('#folder-input', folders.small);
  await page.waitForFunction(() => Array.from(document.querySelectorAll('.class-card .count'), (c) => Number.parseInt(c.textContent, 10)).some((n) => n > 0), null, { timeout: LONG });
  await openApp(page, GENERAL);
  await page.setInputFiles('#folder-input', folders.small);
  await waitForCounts(page, folders.smallCounts);
  const ids = (await storedProject(page)).classes.flatMap((c) => c.imageIds);
  assert.equal(ids.length, total);
  assert.equal(new Set(ids).size, total);
  // Every stored image record of the project is listed by a class: no orphans to come back.
  const storedIds = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('graft');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction('images').objectStore('images').index('project').getAllKeys('my-project');
          get.onsuccess = () => {
            open.result.close();
            resolve(get.result);
          };
        };
      }),
  );
  assert.deepEqual([...storedIds].sort(), [...ids].sort());
  await context.close();
});

test('a project saved by the previous version opens: images restored, its old report set aside', async () => {
  const { context, page } = await freshApp();
  try {
    // The previous version stored images without a content hash, reports in another shape,
    // the head's epochs among the options, and let the same image be added twice.
    const files = ['NORMAL', 'PNEUMONIA'].flatMap((label) => readdirSync(join(folders.small, label)).sort().slice(0, 6).map((name) => ({ label, name, bytes: [...readFileSync(join(folders.small, label, name))] })));
    await page.evaluate(async (files) => {
      const classes = ['NORMAL', 'PNEUMONIA'].map((label) => ({ id: crypto.randomUUID(), label, imageIds: [] }));
      const records = files.map((file, i) => {
        const cls = classes.find((c) => c.label === file.label);
        const embedding = new Float32Array(1280).map((_, j) => Math.sin(i * 7 + j) + (file.label === 'NORMAL' ? 0.5 : -0.5) * Math.cos(j));
        const blob = new File([new Uint8Array(file.bytes)], file.name, { type: 'image/jpeg' });
        return { id: crypto.randomUUID(), projectId: 'my-project', classId: cls.id, name: file.name, blob, thumb: null, embedding };
      });
      records.push({ ...records[0], id: crypto.randomUUID(), name: `copy of ${records[0].name}` });
      for (const r of records) classes.find((c) => c.id === r.classId).imageIds.push(r.id);
      const report = { labels: ['NORMAL', 'PNEUMONIA'], history: [{ epoch: 1, loss: 0.5, accuracy: 0.8, valLoss: 0.4, valAccuracy: 0.9 }], bestEpoch: 1, classIds: classes.map((c) => c.id), validation: null, validationExamples: [{ classIndex: 0, exampleIndex: 1, predicted: 1, probabilities: [0.4, 0.6] }], fineTune: null, seconds: 3 };
      const options = { epochs: 20, batchSize: 16, learningRate: 0.001, validationSplit: 0.25, fineTune: false, fineTuneBlocks: 2, fineTuneEpochs: 0, flip: true };
      const db = await new Promise((resolve, reject) => {
        const open = indexedDB.open('graft');
        open.onsuccess = () => resolve(open.result);
        open.onerror = () => reject(open.error);
      });
      const tx = db.transaction(['projects', 'images'], 'readwrite');
      for (const r of records) tx.objectStore('images').put(r);
      tx.objectStore('projects').put({ id: 'my-project', classes, model: null, modelInfo: null, report, options });
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
      db.close();
    }, files);
    await openApp(page, GENERAL);
    await page.waitForFunction(() => globalThis.noticeLog.length > 0, null, { timeout: 60_000 });
    const notices = await page.evaluate(() => globalThis.noticeLog);
    assert.deepEqual(notices.map((n) => [n.kind, n.text]), [['warning', '1 image was stored twice in this project; the extra copy was removed']]);
    assert.deepEqual(await classCounts(page), { NORMAL: 6, PNEUMONIA: 6 });
    assert.match(await page.textContent('#results'), /Train a model/);
    assert.equal(await page.textContent('#train-status'), 'Not trained yet.');
    assert.equal(await page.inputValue('#option-validationSplit'), '0.25');
    assert.equal(await page.locator('#option-epochs, #option-batchSize, #option-learningRate').count(), 0);
    // The restored engine trains, and the new report replaces the old one.
    await trainAndWait(page);
    const project = await storedProject(page);
    assert.equal(project.report.trainImages + project.report.validationImages, 12);
    assert.deepEqual(Object.keys(project.options).sort(), ['fineTune', 'fineTuneBlocks', 'fineTuneEpochs', 'flip', 'validationSplit']);
    assert.equal(project.classes.flatMap((c) => c.imageIds).length, 12);
  } finally {
    await context.close();
  }
});

test('offline: after the first visit the app and its model work without the server', async () => {
  await ensureTrained();
  const { cliTop } = await ensureExported();
  const page = await generalPage();
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 2 * MINUTES });
  await main.context.setOffline(true);
  try {
    await timed('reload offline', () => openApp(page, GENERAL));
    const { top } = await predictFile(page, folders.heldBack[1].path);
    assert.equal(top, cliTop[1]);
  } finally {
    await main.context.setOffline(false);
  }
});

test('delete all my data empties the app, also after a reload; an exported model imports back', async () => {
  const { path, cliTop } = await ensureExported();
  const { context, page } = await freshApp();
  try {
    await page.setInputFiles('#folder-input', folders.small);
    await waitForCounts(page, folders.smallCounts);
    await page.click('#delete-all');
    await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 0);
    await openApp(page, GENERAL);
    assert.deepEqual(await classCounts(page), { 'Class 1': 0, 'Class 2': 0 });
    assert.ok(await page.$eval('#export-model', (b) => b.disabled), 'no model left to export');
    assert.match(await page.textContent('#results'), /Train a model/);
    await page.setInputFiles('#import-model-input', path);
    await page.waitForFunction(() => !document.querySelector('#try-input').previousElementSibling?.disabled);
    const { top } = await predictFile(page, folders.heldBack.at(-1).path);
    assert.equal(top, cliTop.at(-1));
    await shot(page, '07-imported');
  } finally {
    await context.close();
  }
});

test('a model larger than a storage chunk is kept in pieces and comes back whole after a reload', async () => {
  const path = join(folders.root, 'wide.safetensors');
  // A hidden layer of 1,024 units: a 5 MB model, more than one 4 MB chunk.
  execFileSync(GRAFT_BIN, ['train', '--weights', WEIGHTS_FILE, '--data', folders.small, '--hidden-units', '1024', '--l2', '1', '--out', path], { encoding: 'utf8' });
  const bytes = readFileSync(path);
  const chunk = 4 << 20;
  assert.ok(bytes.length > chunk, `a ${bytes.length}-byte model`);
  const { context, page } = await freshApp();
  try {
    await page.setInputFiles('#import-model-input', path);
    await page.waitForFunction(() => !document.querySelector('#try-input').previousElementSibling?.disabled);
    const stored = await page.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const open = indexedDB.open('graft');
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const tx = open.result.transaction(['projects', 'modelChunks']);
            const project = tx.objectStore('projects').get('my-project');
            const chunks = tx.objectStore('modelChunks').getAll(IDBKeyRange.bound(['my-project', 0], ['my-project', Number.MAX_SAFE_INTEGER]));
            tx.oncomplete = () => {
              open.result.close();
              resolve({ inline: project.result.model, count: project.result.modelChunks, sizes: chunks.result.map((c) => c.bytes.length) });
            };
          };
        }),
    );
    assert.equal(stored.inline, null, 'no model inside the project record');
    assert.equal(stored.count, Math.ceil(bytes.length / chunk));
    assert.deepEqual(stored.sizes.slice(0, -1), Array(stored.count - 1).fill(chunk));
    assert.equal(stored.sizes.reduce((a, b) => a + b, 0), bytes.length);
    // After a reload the model is the imported file, byte for byte.
    await openApp(page, GENERAL);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-model')]);
    assert.ok(readFileSync(await download.path()).equals(bytes), 'the exported model is the imported one');
  } finally {
    await context.close();
  }
});

test('a phone-sized screen: everything fits the width and the controls are labelled', async () => {
  await ensureTrained();
  const page = await generalPage();
  await page.setViewportSize({ width: 390, height: 844 });
  try {
    const wide = await page.evaluate(() => Array.from(document.querySelectorAll('body *')).filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`).slice(0, 10));
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth), `no horizontal scrolling: ${wide.join(', ')}`);
    const unlabelled = await page.$$eval('button, input:not([type=hidden]), select', (controls) =>
      controls.filter((c) => !(c.labels?.length || c.getAttribute('aria-label') || c.textContent.trim())).map((c) => c.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unlabelled, []);
    assert.ok((await page.locator('.thumbs button.remove-image').count()) > 0, 'the thumbnails have their remove controls');
    await shot(page, '08-phone');
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});

test('the medical demo: preset classes, notice, fine-tuning without flips, sensitivity and specificity', async () => {
  const general = await generalPage();
  const generalBefore = await classCounts(general);
  const page = general;
  await openApp(page, '/www/medical/?backend=cpu');
  assert.match(await page.textContent('.disclaimer'), /not a diagnostic device/);
  assert.deepEqual(await classCounts(page), { NORMAL: 0, PNEUMONIA: 0 });
  await timed(`medical: import ${2 * MEDICAL_PER_CLASS} X-rays`, async () => {
    await page.setInputFiles('#folder-input', folders.medical);
    await waitForCounts(page, { NORMAL: MEDICAL_PER_CLASS, PNEUMONIA: MEDICAL_PER_CLASS });
  });
  // The demo fine-tunes without mirroring: left and right matter on an X-ray.
  await page.click('#training summary');
  assert.equal(await page.isChecked('#option-flip'), false);
  assert.ok(await page.isDisabled('#option-fineTuneEpochs'), 'fine-tuning fields wait for fine-tuning');
  await page.check('#option-fineTune');
  assert.equal(await page.inputValue('#option-fineTuneEpochs'), '', 'empty: picked from the data');
  await page.fill('#option-fineTuneEpochs', '1');
  await watchTraining(page);
  await timed(`medical: solve the head + fine-tune 2 blocks for 1 epoch on ${Math.round(1.6 * MEDICAL_PER_CLASS)} X-rays (CPU)`, () => trainAndWait(page));
  const lines = await page.evaluate(() => globalThis.statusLines);
  assert.ok(lines.some((line) => /^Choosing the head’s regularisation · \d+ of \d+$/.test(line)), lines.join('\n'));
  assert.ok(lines.some((line) => /^Fine-tuning the backbone · epoch 1 of 1 · step \d+ of \d+ · about .+ left$/.test(line)), lines.join('\n'));
  const summary = await page.textContent('#train-status');
  assert.match(summary, /^Trained in .+: the head solved with L2 \S+ picked by \d-fold cross-validation, validation accuracy \d+\.\d%; then the last 2 backbone blocks fine-tuned for 1 epoch(?: \(stopped early: validation stopped improving\))?, (keeping epoch 1 \(validation accuracy \d+\.\d%\)|but none beat the head alone, which was kept)\.$/);
  assert.match(await page.textContent('.fine-tune-notes'), /augmentation: off/);
  const { report, options } = await storedProject(page, 'chest-xray');
  assert.equal(report.fineTune.plan.augment.flip, false);
  assert.equal(report.fineTune.plan.blocks, 2);
  assert.equal(report.fineTune.plan.epochs, 1);
  assert.deepEqual(options, { validationSplit: 0.2, fineTune: true, fineTuneBlocks: 2, fineTuneEpochs: 1, flip: false });
  // The fine-tuning curves: epoch 0 (the head alone) and epoch 1.
  const epochs = (report.fineTune.baseline ? 1 : 0) + report.fineTune.history.length;
  assert.ok(await page.isVisible('#fine-tune-charts'));
  assert.equal(await page.getAttribute('.chart[data-metric="loss"]', 'data-points'), String(epochs));
  assert.equal(await page.getAttribute('.chart[data-metric="accuracy"]', 'data-points'), String(epochs));
  for (const key of ['accuracy', 'sensitivity', 'specificity', 'auc']) assert.ok(await page.isVisible(`[data-metric="${key}"]`), key);
  assert.match(await page.textContent('[data-metric="sensitivity"] small'), /PNEUMONIA/);
  // Beside the numbers, what the heat maps can and cannot tell; Try it shows a fine-tuned
  // model's map (from its own fine-tuned layers) over the X-ray.
  assert.match(await page.textContent('#map-note'), /text marker.*cannot tell whether a finding is real/s);
  const { top } = await predictFile(page, folders.heldBack[2].path);
  assert.ok(['NORMAL', 'PNEUMONIA'].includes(top));
  assert.match(await page.textContent('#explained-caption'), new RegExp(`^Where the evidence for “${top}”`));
  await shot(page, '09-medical');
  // A reload draws the same curves and summary from the saved report.
  await openApp(page, '/www/medical/?backend=cpu');
  await page.waitForFunction(() => /^Last training/.test(document.getElementById('train-status').textContent));
  assert.equal(await page.textContent('#train-status'), `Last training: ${summary}`);
  assert.equal(await page.getAttribute('.chart[data-metric="loss"]', 'data-points'), String(epochs));
  assert.equal(await page.getAttribute('.chart[data-metric="cv"]', 'data-points'), String(report.head.search.length));
  // The general app's project is separate and untouched by the demo.
  await openApp(page, GENERAL);
  assert.deepEqual(await classCounts(page), generalBefore);
});

test('auto picks WebGPU where the browser has an adapter', async () => {
  const { context, page } = await freshApp({ path: '/?no-offline' });
  try {
    assert.equal(await page.textContent('#backend'), 'WebGPU');
  } finally {
    await context.close();
  }
});

test('without WebGPU the app says so and runs on the CPU', async () => {
  const plain = await launchChromium({ webgpu: false });
  try {
    const context = await newContext({ browser: plain });
    const other = await context.newPage();
    await openApp(other, '/?no-offline');
    assert.equal(await other.textContent('#backend'), 'CPU');
    assert.match(await other.textContent('#engine-status'), /on the CPU because WebGPU is not available/);
  } finally {
    await plain.close();
  }
});

test('privacy: every request of every page, worker and service worker went to the page’s own server, none sent data', async () => {
  // Alone, this test runs the flow itself: load, import, train, predict.
  await ensureTrained();
  const page = await generalPage();
  await predictFile(page, folders.heldBack[0].path);
  app.assertPrivate({ minRequests: 20, isTestImage: (url) => url.startsWith('/datasets/') });
});
