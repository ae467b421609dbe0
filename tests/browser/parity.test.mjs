// The browser and the CLI are one product: the same images, seed and options train the same
// model with the same report; a model trained in the browser is scored by `graft eval --split
// val` on exactly its held-out images; and the same image file gets the same prediction in
// both. Every test stands alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WEIGHTS, XRAY_DIR, cliPredictions, graft, temporaryFile, useBrowser, xrayFiles, xrayUrl } from './fixtures.mjs';

const NORMAL = xrayFiles('NORMAL');
const PNEUMONIA = xrayFiles('PNEUMONIA');
const session = useBrowser({ webgpu: false });

/** Writes `{ 'CLASS/name': base64 }` under a new folder; returns it. */
function writeFolder(files) {
  const root = mkdtempSync(join(tmpdir(), 'graft-parity-'));
  for (const [id, base64] of Object.entries(files)) {
    mkdirSync(join(root, id.split('/')[0]), { recursive: true });
    writeFileSync(join(root, id), Buffer.from(base64, 'base64'));
  }
  return root;
}

const close = (a, b, tolerance, what) => assert.ok(Math.abs(a - b) <= tolerance, `${what}: ${a} vs ${b}`);

test('the same images, seed and options give the CLI report: split, penalty, history, best epoch, accuracy', async () => {
  const augment = { flip: true, crop: true, rotate: true, brightness: true, contrast: true };
  const options = { validationSplit: 0.25, seed: 7, fineTuneBlocks: 1, epochs: 2, batchSize: 8, patience: 0, augment, dropout: 0.2 };
  const { page, context, errors } = await session.openHarness();
  // PNG copies of real X-rays: both sides decode PNGs exactly, so their pixels are the same.
  const browser = await page.evaluate(
    async ({ weights, classes, options }) => {
      const files = {};
      const graft = await Graft.create({ weights, backend: 'cpu' });
      for (const [label, urls] of Object.entries(classes)) {
        const pngs = [];
        for (const file of await fetchImages(urls)) {
          const bitmap = await createImageBitmap(file);
          const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
          canvas.getContext('2d').drawImage(bitmap, 0, 0);
          const png = await canvas.convertToBlob({ type: 'image/png' });
          const id = `${label}/${file.name.replace(/\.jpeg$/, '.png')}`;
          files[id] = btoa(Array.from(new Uint8Array(await png.arrayBuffer()), (b) => String.fromCharCode(b)).join(''));
          pngs.push({ id, png });
        }
        await graft.addExamples(label, pngs.map((p) => p.png), { ids: pngs.map((p) => p.id) });
      }
      const report = await graft.train(options);
      graft.dispose();
      return { files, report };
    },
    {
      weights: WEIGHTS,
      classes: {
        NORMAL: NORMAL.slice(0, 30).map((n) => xrayUrl('NORMAL', n)),
        PNEUMONIA: PNEUMONIA.slice(0, 30).map((n) => xrayUrl('PNEUMONIA', n)),
      },
      options,
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  const folder = writeFolder(browser.files);
  const cli = JSON.parse(
    graft(['train', '--data', folder, '--validation-split', '0.25', '--seed', '7', '--fine-tune-blocks', '1', '--epochs', '2', '--batch-size', '8', '--patience', '0', '--augment', '--dropout', '0.2', '--out', join(folder, 'model.safetensors'), '--json']),
  );
  const web = browser.report;
  for (const key of ['labels', 'trainImages', 'validationImages']) assert.deepEqual(web[key], cli[key], key);
  // The same held-out images, named the same (the ids given are the CLI's paths), in the same order.
  assert.deepEqual(web.validationExamples.map((e) => e.id), cli.validationExamples.map((e) => e.id));
  // Phase 1: the same path of penalties and the same pick; losses agree to float rounding.
  assert.equal(web.head.l2, cli.head.l2);
  assert.deepEqual(web.head.search.map((t) => [t.l2, t.cvAccuracy]), cli.head.search.map((t) => [t.l2, t.cvAccuracy]));
  web.head.search.forEach((t, i) => close(t.cvLoss, cli.head.search[i].cvLoss, 1e-4, `cvLoss at ${t.l2}`));
  assert.equal(web.head.valAccuracy, cli.head.valAccuracy);
  // Phase 2 (with augmentation and dropout, every random draw seeded): the same epochs to float
  // rounding, and the same kept epoch.
  const [a, b] = [web.fineTune, cli.fineTune];
  assert.deepEqual(a.plan, b.plan);
  assert.equal(a.history.length, b.history.length);
  for (const [i, epoch] of [a.baseline, ...a.history].entries()) {
    const other = [b.baseline, ...b.history][i];
    assert.equal(epoch.valAccuracy, other.valAccuracy, `epoch ${epoch.epoch} validation accuracy`);
    close(epoch.valLoss, other.valLoss, 1e-5, `epoch ${epoch.epoch} validation loss`);
    if (epoch.epoch > 0) close(epoch.loss, other.loss, 1e-5, `epoch ${epoch.epoch} loss`);
  }
  assert.equal(a.bestEpoch, b.bestEpoch);
  // The notes, to the solver's iteration count: that depends on the embeddings' last bits, which
  // the CPU path computes with fused multiply-adds natively and without them in wasm.
  const iterationsMasked = (notes) => notes.map((note) => note.replace(/solved in \d+ iterations/, 'solved in N iterations'));
  assert.deepEqual(iterationsMasked(web.notes), iterationsMasked(cli.notes));
  assert.ok(web.head.converged && cli.head.converged, 'both heads solved to tolerance');
  assert.equal(web.validation.accuracy, cli.validation.accuracy);
  assert.deepEqual(web.validation.confusion, cli.validation.confusion);
  close(web.validation.binary.rocAuc, cli.validation.binary.rocAuc, 1e-9, 'ROC AUC');
});

test('a model trained in the browser on the X-rays is scored by `graft eval --split val` on exactly its held-out images', async () => {
  const { page, context, errors } = await session.openHarness();
  const browser = await page.evaluate(
    async ({ weights, classes }) => {
      const graft = await Graft.create({ weights, backend: 'cpu' });
      // Added in the browser's own order (the app sorts with localeCompare), not the CLI's.
      for (const [label, urls] of Object.entries(classes)) {
        const files = (await fetchImages(urls)).sort((x, y) => y.name.localeCompare(x.name));
        await graft.addExamples(label, files);
      }
      const report = await graft.train();
      const model = await graft.exportModel();
      graft.dispose();
      return { report, model: Array.from(model) };
    },
    {
      weights: WEIGHTS,
      classes: { NORMAL: NORMAL.map((n) => xrayUrl('NORMAL', n)), PNEUMONIA: PNEUMONIA.map((n) => xrayUrl('PNEUMONIA', n)) },
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  const { report } = browser;
  assert.equal(report.validationImages, 120);
  const model = temporaryFile('browser.safetensors', browser.model);
  const evaluation = JSON.parse(graft(['eval', '--model', model, '--data', XRAY_DIR, '--split', 'val', '--json']));
  assert.equal(evaluation.images, report.validationImages);
  assert.equal(evaluation.accuracy, report.validation.accuracy);
  assert.deepEqual(evaluation.confusion, report.validation.confusion);
  console.log(`browser validation accuracy ${report.validation.accuracy}; graft eval --split val ${evaluation.accuracy}`);
});

test('the same image file gets the same prediction in the browser and the CLI, large photos included', async () => {
  // A model to predict with, trained by the CLI on a slice of the X-rays.
  const data = mkdtempSync(join(tmpdir(), 'graft-model-'));
  const { copyFileSync } = await import('node:fs');
  for (const [label, names] of [['NORMAL', NORMAL], ['PNEUMONIA', PNEUMONIA]]) {
    mkdirSync(join(data, label));
    for (const name of names.slice(0, 25)) copyFileSync(join(XRAY_DIR, label, name), join(data, label, name));
  }
  const modelPath = join(data, 'model.safetensors');
  graft(['train', '--data', data, '--out', modelPath]);
  const { readFileSync } = await import('node:fs');
  const modelBytes = readFileSync(modelPath);

  const { page, context, errors } = await session.openHarness();
  const browser = await page.evaluate(
    async ({ weights, model, xrays, photo }) => {
      const encode = async (blob) => btoa(Array.from(new Uint8Array(await blob.arrayBuffer()), (b) => String.fromCharCode(b)).join(''));
      const images = [];
      for (const file of await fetchImages(xrays)) images.push({ name: file.name, blob: file });
      // Larger than 512 px on their short side, in JPEG and PNG, one with transparency: what
      // the worker used to shrink with canvas smoothing before the engine saw it.
      const sources = await fetchImages([...xrays.slice(0, 12), photo]);
      const sizes = [[1600, 1200], [900, 1400], [2400, 1600], [700, 700], [1024, 768], [3000, 2000], [600, 1800], [1200, 1200], [800, 600], [2048, 1536], [640, 960], [1920, 1080], [1353, 900]];
      for (const [i, source] of sources.entries()) {
        const [width, height] = sizes[i];
        const bitmap = await createImageBitmap(source);
        const canvas = new OffscreenCanvas(width, height);
        const context2d = canvas.getContext('2d');
        const gradient = context2d.createLinearGradient(0, 0, width, height);
        gradient.addColorStop(0, '#204060');
        gradient.addColorStop(1, '#e0c080');
        context2d.fillStyle = gradient;
        if (i % 3 !== 2) context2d.fillRect(0, 0, width, height);
        context2d.drawImage(bitmap, width * 0.1, height * 0.1, width * 0.8, height * 0.8);
        const type = i % 3 === 0 ? 'image/jpeg' : 'image/png';
        const blob = await canvas.convertToBlob({ type, quality: 0.9 });
        images.push({ name: `large-${i}-${width}x${height}.${type === 'image/png' ? 'png' : 'jpg'}`, blob });
      }
      const graft = await Graft.load({ weights, model: new Uint8Array(model), backend: 'cpu' });
      const out = [];
      for (const { name, blob } of images) {
        out.push({ name, bytes: await encode(blob), predictions: await graft.predict(blob, { topK: 2 }) });
      }
      graft.dispose();
      return out;
    },
    {
      weights: WEIGHTS,
      model: Array.from(modelBytes),
      xrays: [...NORMAL.slice(-20).map((n) => xrayUrl('NORMAL', n)), ...PNEUMONIA.slice(-20).map((n) => xrayUrl('PNEUMONIA', n))],
      photo: '/reference/efficientnet_lite0/chelsea.png',
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.ok(browser.length >= 50, `${browser.length} images`);
  assert.ok(browser.filter((i) => i.name.startsWith('large-')).length >= 12);
  const folder = mkdtempSync(join(tmpdir(), 'graft-images-'));
  const paths = browser.map(({ name, bytes }) => {
    const path = join(folder, name);
    writeFileSync(path, Buffer.from(bytes, 'base64'));
    return path;
  });
  const cli = cliPredictions(modelBytes, paths);
  const differences = browser.map(({ name, predictions }, i) => ({
    name,
    top: [predictions[0].label, cli[i][0].label],
    difference: Math.max(...predictions.map(({ label, score }) => Math.abs(score - cli[i].find((p) => p.label === label).score))),
  }));
  const worst = [...differences].sort((a, b) => b.difference - a.difference);
  console.log(`${browser.length} images; largest probability differences between browser and CLI:`, JSON.stringify(worst.slice(0, 5)));
  for (const { name, top, difference } of differences) {
    assert.equal(top[0], top[1], `${name}: top class`);
    assert.ok(difference < 0.01, `${name}: probabilities differ by ${difference}`);
  }
});
