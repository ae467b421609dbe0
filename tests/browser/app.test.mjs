// The web app end to end in headless Chromium, as a visitor uses it: classes, the chest X-ray
// folder through the folder input, webcam capture, training with live curves, results, try it,
// export and re-import, reload, offline, delete all, and the medical demo. Every request of the
// whole flow is recorded and must stay on the page's own server. Screenshots of each main state
// go to test-artifacts/app/ (not committed) for a person to look at.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';
import { repoRoot, sharedRoot, startServer } from './server.mjs';

const XRAY_DIR = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');
const ARTIFACTS = join(repoRoot, 'test-artifacts', 'app');
const GRAFT_BIN = process.env.GRAFT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
const WEIGHTS_FILE = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');
const HELD_BACK_PER_CLASS = 2;
/** The medical demo's run uses a slice of the folder: the general flow already covers scale. */
const MEDICAL_PER_CLASS = 40;

let server;
let browser;
let context;
let page;
const requestLog = [];
const pageErrors = [];
const timings = {};
const folders = {};

/** Copies the X-ray folder into a temporary `xrays/CLASS/` tree, holding a few images back. */
function prepareFolders() {
  const root = mkdtempSync(join(tmpdir(), 'graft-app-'));
  const heldBack = [];
  for (const [name, limit] of [['full', Infinity], ['medical', MEDICAL_PER_CLASS]]) {
    for (const label of ['NORMAL', 'PNEUMONIA']) {
      const files = readdirSync(join(XRAY_DIR, label)).sort();
      const dir = join(root, name, 'xrays', label);
      mkdirSync(dir, { recursive: true });
      for (const file of files.slice(0, -HELD_BACK_PER_CLASS).slice(0, limit)) copyFileSync(join(XRAY_DIR, label, file), join(dir, file));
      if (name === 'full') heldBack.push(...files.slice(-HELD_BACK_PER_CLASS).map((file) => ({ label, path: join(XRAY_DIR, label, file) })));
    }
  }
  writeFileSync(join(root, 'full', 'xrays', 'README.txt'), 'not in a class folder: ignored');
  return { full: join(root, 'full', 'xrays'), medical: join(root, 'medical', 'xrays'), heldBack, root };
}

async function timed(name, action) {
  const start = performance.now();
  const result = await action();
  timings[name] = Number(((performance.now() - start) / 1000).toFixed(2));
  return result;
}

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Counts shown on the class cards: `{ label: count }`. */
async function classCounts() {
  return page.$$eval('.class-card', (cards) =>
    Object.fromEntries(cards.map((card) => [card.querySelector('.class-name').value, Number.parseInt(card.querySelector('.count').textContent, 10)])),
  );
}

async function openApp(path) {
  await page.goto(`${server.origin}${path}`);
  await page.waitForSelector('body[data-ready]', { timeout: 60_000 });
}

async function predictFile(file) {
  await page.evaluate(() => delete document.getElementById('predictions').dataset.top);
  await page.setInputFiles('#try-input', file);
  await page.waitForFunction(() => document.getElementById('predictions').dataset.top, null, { timeout: 60_000 });
  return page.$eval('#predictions', (list) => ({
    top: list.dataset.top,
    bars: Array.from(list.querySelectorAll('li'), (li) => [li.querySelector('.label').textContent, li.querySelector('.score').textContent]),
  }));
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  Object.assign(folders, prepareFolders());
  server = await startServer();
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  context.on('request', (request) =>
    requestLog.push({ url: request.url(), method: request.method(), bodyBytes: request.postDataBuffer()?.length ?? 0 }),
  );
  // Content-Security-Policy violations would mean the page tried something its policy forbids.
  await context.addInitScript(() => {
    globalThis.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => globalThis.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('dialog', (dialog) => dialog.accept());
});

after(async () => {
  await browser?.close();
  await server?.close();
  writeFileSync(join(ARTIFACTS, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  console.log('app flow timings (s)', JSON.stringify(timings));
});

test('the app loads, says where it runs, and starts with two empty classes', async () => {
  await timed('load (cold: engine and weights download)', () => openApp('/?backend=cpu'));
  assert.equal(await page.textContent('#backend'), 'CPU');
  assert.match(await page.textContent('#engine-status'), /Ready/);
  assert.deepEqual(await classCounts(), { 'Class 1': 0, 'Class 2': 0 });
  const csp = await page.$eval('meta[http-equiv="Content-Security-Policy"]', (m) => m.content);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
  await shot('01-empty');
});

test('classes: rename, add, refuse a duplicate name, delete', async () => {
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
  assert.deepEqual(await classCounts(), { NORMAL: 0, PNEUMONIA: 0, 'Class 3': 0 });
});

test('webcam: holding the record button captures frames into a class', async () => {
  const card = page.locator('.class-card').nth(2);
  await card.locator('button.webcam').click();
  const record = card.locator('button.record');
  await record.waitFor();
  await page.waitForFunction(() => document.querySelector('video.camera')?.videoWidth > 0);
  const box = await record.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.waitForTimeout(1000);
  await page.mouse.up();
  await page.waitForFunction(() => Number.parseInt(document.querySelectorAll('.class-card')[2].querySelector('.count').textContent, 10) >= 3, null, { timeout: 60_000 });
  await card.locator('.thumbs img').first().waitFor();
  await shot('02-webcam');
  await card.locator('button.webcam').click();
  await card.locator('button.remove-class').click();
  await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 2);
});

test('a whole folder goes in through the folder input, one class per sub-folder', async () => {
  const expected = Object.fromEntries(['NORMAL', 'PNEUMONIA'].map((label) => [label, readdirSync(join(folders.full, label)).length]));
  // Count animation frames meanwhile: the page must stay responsive while the engine works.
  await page.evaluate(() => {
    globalThis.frames = 0;
    globalThis.framesFrom = performance.now();
    const tick = () => {
      globalThis.frames += 1;
      if (!globalThis.framesStop) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  await timed(`import folder (${expected.NORMAL + expected.PNEUMONIA} X-rays, decode + embed on CPU)`, async () => {
    await page.setInputFiles('#folder-input', folders.full);
    await page.waitForFunction(
      (want) => {
        const counts = Object.fromEntries(Array.from(document.querySelectorAll('.class-card'), (c) => [c.querySelector('.class-name').value, Number.parseInt(c.querySelector('.count').textContent, 10)]));
        return counts.NORMAL === want.NORMAL && counts.PNEUMONIA === want.PNEUMONIA && !document.querySelector('#import-folder').disabled;
      },
      expected,
      { timeout: 600_000 },
    );
  });
  const fps = await page.evaluate(() => {
    globalThis.framesStop = true;
    return globalThis.frames / ((performance.now() - globalThis.framesFrom) / 1000);
  });
  timings['main thread frames per second during import'] = Number(fps.toFixed(1));
  assert.ok(fps > 20, `the page drew ${fps.toFixed(1)} frames per second during the import`);
  assert.deepEqual(await classCounts(), expected);
  // However many images, only a bounded strip of thumbnails is drawn.
  const thumbs = await page.$$eval('.class-card', (cards) => cards.map((c) => c.querySelectorAll('.thumbs img').length));
  assert.ok(thumbs.every((n) => n > 0 && n <= 12), `thumbnails per class: ${thumbs}`);
  assert.match(await page.textContent('.thumbs .more'), /^\+\d+$/);
  await shot('03-classes');
});

test('a file that is not an image is skipped and named; nothing else changes', async () => {
  const before = await classCounts();
  await page.locator('.class-card').nth(0).locator('input[type=file]').setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a picture') });
  await page.waitForSelector('.notice.warning details');
  assert.match(await page.textContent('.notice.warning details'), /notes\.jpg: not an image the browser can decode/);
  assert.deepEqual(await classCounts(), before);
  for (const button of await page.$$('.notice button')) await button.click();
});

test('training shows live curves, progress and then the results', async () => {
  await page.click('#training summary');
  await page.fill('#option-epochs', '15');
  // Record every value the charts show, to see them grow epoch by epoch.
  await page.evaluate(() => {
    globalThis.chartPoints = [];
    globalThis.statusLines = [];
    const chart = document.querySelector('.chart[data-metric="loss"]');
    new MutationObserver(() => globalThis.chartPoints.push(Number(chart.dataset.points))).observe(chart, { attributes: true, attributeFilter: ['data-points'] });
    const status = document.getElementById('train-status');
    new MutationObserver(() => globalThis.statusLines.push(status.textContent)).observe(status, { childList: true, characterData: true, subtree: true });
  });
  await timed('train 15 epochs (head, CPU)', async () => {
    await page.click('#train');
    await page.waitForFunction(() => /^Trained/.test(document.getElementById('train-status').textContent), null, { timeout: 300_000 });
  });
  const points = await page.evaluate(() => globalThis.chartPoints);
  assert.ok(points.includes(1) && points.includes(8) && points.at(-1) === 15, `loss chart points seen: ${points}`);
  assert.equal(await page.getAttribute('.chart[data-metric="accuracy"]', 'data-points'), '15');
  const lines = await page.evaluate(() => globalThis.statusLines);
  assert.ok(lines.some((line) => /^Epoch 3 of 15 · step 90 of 450 · validation accuracy \d+\.\d% · about .* left$/.test(line)), lines.join('\n'));
  assert.ok(await page.$eval('#train-progress', (p) => p.value === p.max && p.max > 0), 'the bar is full');
  const accuracy = Number.parseFloat(await page.textContent('[data-metric="accuracy"] .value'));
  assert.ok(accuracy >= 85, `validation accuracy ${accuracy}%`);
  const cells = await page.$$eval('#confusion tbody td', (tds) => tds.map((td) => Number(td.textContent)));
  assert.equal(cells.length, 4);
  const heldOut = cells.reduce((a, b) => a + b, 0);
  assert.equal(heldOut, Math.round(0.2 * 298) * 2, 'the matrix counts every held-out image');
  const mistakes = await page.$$eval('.mistakes li', (items) => items.map((li) => li.textContent));
  assert.ok(mistakes.length >= 1, 'misclassified images or a note that there are none');
  const wrong = cells[1] + cells[2];
  if (wrong > 0) assert.equal(await page.$$eval('.mistake img', (imgs) => imgs.length), Math.min(wrong, 24));
  assert.match(await page.textContent('[data-metric="sensitivity"] .value'), /%$/);
  timings['validation accuracy (%)'] = accuracy;
  await shot('04-trained');
});

test('try it: held-back X-rays get the right top class', async () => {
  let correct = 0;
  await timed(`predict ${folders.heldBack.length} held-back images`, async () => {
    for (const { label, path } of folders.heldBack) {
      const { top, bars } = await predictFile(path);
      assert.equal(bars.length, 2);
      if (top === label) correct += 1;
    }
  });
  assert.ok(correct >= folders.heldBack.length - 1, `${correct} of ${folders.heldBack.length} right`);
  await shot('05-try-it');
  // Live webcam (Chromium's fake camera): predictions keep coming until it is stopped.
  await page.evaluate(() => delete document.getElementById('predictions').dataset.top);
  await page.click('#try button[aria-pressed]');
  await page.waitForFunction(() => document.getElementById('predictions').dataset.top, null, { timeout: 60_000 });
  assert.equal(await page.getAttribute('#try button[aria-pressed]', 'aria-pressed'), 'true');
  await page.click('#try button[aria-pressed]');
  assert.equal(await page.getAttribute('#try button[aria-pressed]', 'aria-pressed'), 'false');
});

test('export: the downloaded model is the file the CLI reads, with the same answers', async () => {
  const download = await timed('export model', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-model')]);
    return download;
  });
  folders.model = join(folders.root, 'model.safetensors');
  await download.saveAs(folders.model);
  assert.equal(download.suggestedFilename(), 'graft-model.safetensors');
  const bytes = readFileSync(folders.model);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  assert.equal(header.__metadata__['graft.kind'], 'model');
  const cli = JSON.parse(
    execFileSync(GRAFT_BIN, ['predict', '--weights', WEIGHTS_FILE, '--model', folders.model, '--json', ...folders.heldBack.map((h) => h.path)], { encoding: 'utf8' }),
  );
  folders.cliTop = cli.map((entry) => entry.predictions[0].label);
  for (const [i, { path }] of folders.heldBack.entries()) {
    const { top } = await predictFile(path);
    assert.equal(top, folders.cliTop[i], `browser and CLI agree on ${path}`);
  }
});

test('a reload finds the project intact: classes, images, model and results', async () => {
  const before = { counts: await classCounts(), accuracy: await page.textContent('[data-metric="accuracy"] .value') };
  await timed('reload (engine from cache, project from IndexedDB)', () => openApp('/?backend=cpu'));
  await page.waitForSelector('[data-metric="accuracy"] .value');
  assert.deepEqual(await classCounts(), before.counts);
  assert.equal(await page.textContent('[data-metric="accuracy"] .value'), before.accuracy);
  assert.equal(await page.getAttribute('.chart[data-metric="loss"]', 'data-points'), '15');
  const { top } = await predictFile(folders.heldBack[0].path);
  assert.equal(top, folders.cliTop[0]);
  await shot('06-reloaded');
});

test('delete all my data empties the app, also after a reload; an exported model imports back', async () => {
  await page.click('#delete-all');
  await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 0);
  await openApp('/?backend=cpu');
  assert.deepEqual(await classCounts(), { 'Class 1': 0, 'Class 2': 0 });
  assert.ok(await page.$eval('#export-model', (b) => b.disabled), 'no model left to export');
  assert.match(await page.textContent('#results'), /Train a model/);
  await page.setInputFiles('#import-model-input', folders.model);
  await page.waitForFunction(() => !document.querySelector('#try-input').previousElementSibling?.disabled);
  const { top } = await predictFile(folders.heldBack.at(-1).path);
  assert.equal(top, folders.cliTop.at(-1));
  await shot('07-imported');
});

test('offline: after the first visit the app and the imported model work without the server', async () => {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  await context.setOffline(true);
  try {
    await timed('reload offline', () => openApp('/?backend=cpu'));
    const { top } = await predictFile(folders.heldBack[1].path);
    assert.equal(top, folders.cliTop[1]);
  } finally {
    await context.setOffline(false);
  }
});

test('a phone-sized screen: everything fits the width and the controls are labelled', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'no horizontal scrolling');
  const unlabelled = await page.$$eval('button, input:not([type=hidden]), select', (controls) =>
    controls.filter((c) => !(c.labels?.length || c.getAttribute('aria-label') || c.textContent.trim())).map((c) => c.outerHTML.slice(0, 80)),
  );
  assert.deepEqual(unlabelled, []);
  await shot('08-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('the medical demo: preset classes, notice, sensitivity and specificity', async () => {
  await openApp('/www/medical/?backend=cpu');
  assert.match(await page.textContent('.disclaimer'), /not a diagnostic device/);
  assert.deepEqual(await classCounts(), { NORMAL: 0, PNEUMONIA: 0 });
  await timed(`medical: import ${2 * MEDICAL_PER_CLASS} X-rays`, async () => {
    await page.setInputFiles('#folder-input', folders.medical);
    await page.waitForFunction((n) => Array.from(document.querySelectorAll('.count')).every((c) => Number.parseInt(c.textContent, 10) === n), MEDICAL_PER_CLASS, { timeout: 300_000 });
  });
  // The demo fine-tunes without mirroring: left and right matter on an X-ray.
  await page.click('#training summary');
  assert.equal(await page.isChecked('#option-flip'), false);
  await page.check('#option-fineTune');
  await page.fill('#option-fineTuneEpochs', '1');
  await page.evaluate(() => {
    globalThis.statusLines = [];
    const status = document.getElementById('train-status');
    new MutationObserver(() => globalThis.statusLines.push(status.textContent)).observe(status, { childList: true, characterData: true, subtree: true });
  });
  await timed(`medical: train head + fine-tune 2 blocks for 1 epoch on ${Math.round(1.6 * MEDICAL_PER_CLASS)} X-rays (CPU)`, async () => {
    await page.click('#train');
    await page.waitForFunction(() => /^Trained/.test(document.getElementById('train-status').textContent), null, { timeout: 300_000 });
  });
  const lines = await page.evaluate(() => globalThis.statusLines);
  assert.ok(lines.some((line) => /^Fine-tuning the backbone · epoch 1 of 1 · step \d+ of \d+/.test(line)), lines.join('\n'));
  assert.match(await page.textContent('#train-status'), /^Trained in .*: the head for 20 epochs \(best epoch \d+\), then the last 2 backbone blocks fine-tuned for 1 epoch, /);
  assert.match(await page.textContent('.fine-tune-notes'), /augmentation: crop, rotate, brightness, contrast/);
  for (const key of ['accuracy', 'sensitivity', 'specificity', 'auc']) assert.ok(await page.isVisible(`[data-metric="${key}"]`), key);
  assert.match(await page.textContent('[data-metric="sensitivity"] small'), /PNEUMONIA/);
  const { top } = await predictFile(folders.heldBack[2].path);
  assert.ok(['NORMAL', 'PNEUMONIA'].includes(top));
  await shot('09-medical');
  // The general app's project is separate and untouched by the demo.
  await openApp('/?backend=cpu');
  assert.deepEqual(await classCounts(), { 'Class 1': 0, 'Class 2': 0 });
});

test('auto picks WebGPU where the browser has an adapter', async () => {
  await openApp('/');
  assert.equal(await page.textContent('#backend'), 'WebGPU');
});

test('without WebGPU the app says so and runs on the CPU', async () => {
  const plain = await launchChromium({ webgpu: false });
  try {
    const other = await plain.newPage();
    await other.goto(`${server.origin}/?no-offline`);
    await other.waitForSelector('body[data-ready]', { timeout: 60_000 });
    assert.equal(await other.textContent('#backend'), 'CPU');
    assert.match(await other.textContent('#engine-status'), /on the CPU because WebGPU is not available/);
  } finally {
    await plain.close();
  }
});

test('privacy: over the whole flow, every request went to the page’s own server, none sent data', async () => {
  const origin = server.origin;
  const network = requestLog.filter((r) => !r.url.startsWith('blob:') && !r.url.startsWith('data:'));
  assert.ok(network.length > 20, `requests recorded: ${network.length}`);
  assert.deepEqual(network.filter((r) => !r.url.startsWith(`${origin}/`)), [], 'requests to other hosts');
  assert.deepEqual(network.filter((r) => r.method !== 'GET' || r.bodyBytes > 0), [], 'requests that send data');
  assert.deepEqual(server.requests.filter((r) => r.method !== 'GET' || r.bodyBytes > 0), [], 'seen by the server');
  const datasetRequests = server.requests.filter((r) => r.url.startsWith('/datasets/'));
  assert.deepEqual(datasetRequests, [], 'the images came from the file inputs, not the server');
  assert.deepEqual(await page.evaluate(() => globalThis.cspViolations), []);
  assert.deepEqual(pageErrors, []);
});
