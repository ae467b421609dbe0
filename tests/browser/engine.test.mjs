// The browser engine in real headless Chromium with a real WebGPU adapter (SwiftShader here):
// training on both backends, agreement with the CLI, privacy, responsiveness and bad input.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, openHarness as openHarnessPage } from './chromium.mjs';
import { repoRoot, sharedRoot, startServer } from './server.mjs';

const WEIGHTS = '/weights/efficientnet_lite0.safetensors';
const XRAY_DIR = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');
const GRAFT_BIN = process.env.GRAFT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
const WEIGHTS_FILE = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');

/** Sorted file names of one class; the test takes slices so training and checks never overlap. */
function xrayFiles(label) {
  return readdirSync(join(XRAY_DIR, label)).sort();
}
const NORMAL = xrayFiles('NORMAL');
const PNEUMONIA = xrayFiles('PNEUMONIA');
const url = (label, name) => `/datasets/chest_xray_pneumonia/${label}/${name}`;
// SwiftShader runs WebGPU on the CPU (about 0.6 images/s here), so that backend gets fewer images.
const PER_CLASS = { webgpu: 20, cpu: 40 };
if (process.env.GRAFT_BROWSER_IMAGES_PER_CLASS) PER_CLASS.webgpu = PER_CLASS.cpu = Number(process.env.GRAFT_BROWSER_IMAGES_PER_CLASS);
const TRAINING = { epochs: 8, batchSize: 8, learningRate: 0.003, validationSplit: 0.25 };
const HELD_BACK = [...NORMAL.slice(-3).map((n) => ['NORMAL', n]), ...PNEUMONIA.slice(-3).map((n) => ['PNEUMONIA', n])];

let server;
let browser;
const requestLog = [];
const measurements = {};

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  console.log('measurements', JSON.stringify(measurements, null, 2));
});

/** A fresh page on the harness, every request of which is recorded. */
const openHarness = () =>
  openHarnessPage(browser, server.origin, {
    onRequest: (request) => requestLog.push({ url: request.url(), method: request.method(), bodyBytes: request.postDataBuffer()?.length ?? 0 }),
  });

/** Top class of each image according to the CLI. */
function cliTopClasses(modelBytes, files) {
  const dir = mkdtempSync(join(tmpdir(), 'graft-'));
  const model = join(dir, 'model.safetensors');
  writeFileSync(model, Buffer.from(modelBytes));
  const out = execFileSync(GRAFT_BIN, ['predict', '--weights', WEIGHTS_FILE, '--model', model, '--json', ...files], {
    encoding: 'utf8',
  });
  return JSON.parse(out).map((entry) => entry.predictions[0].label);
}

async function trainOnBackend(backend) {
  const { page, context, errors } = await openHarness();
  const weightDownloads = () => server.requests.filter((r) => r.url === WEIGHTS).length;
  const downloadsBefore = weightDownloads();
  const normal = NORMAL.slice(0, PER_CLASS[backend]).map((n) => url('NORMAL', n));
  const pneumonia = PNEUMONIA.slice(0, PER_CLASS[backend]).map((n) => url('PNEUMONIA', n));
  const heldBack = HELD_BACK.map(([label, name]) => url(label, name));
  const result = await page.evaluate(
    async ({ backend, normal, pneumonia, heldBack, weights, TRAINING }) => {
      const progress = [];
      let started = performance.now();
      const graft = await Graft.create({ weights, backend, onProgress: (p) => progress.push(p.status) });
      const createSeconds = (performance.now() - started) / 1000;
      started = performance.now();
      await graft.addExamples('NORMAL', await fetchImages(normal));
      await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      const embedSeconds = (performance.now() - started) / 1000;
      const epochs = [];
      const training = await countFrames(() =>
        graft.train({ ...TRAINING, onEpoch: (e) => epochs.push(e) }),
      );
      const predictions = [];
      for (const file of await fetchImages(heldBack)) predictions.push((await graft.predict(file, { topK: 2 }))[0].label);
      const heldBackFiles = await fetchImages(heldBack);
      const evaluation = await graft.evaluate(
        heldBackFiles.map((image, i) => ({ image, label: heldBack[i].split('/').at(-2) })),
      );
      const model = await graft.exportModel();
      const backendUsed = graft.backend;
      const classes = graft.classes();
      graft.dispose();
      // A second start in the same page reads the weights from the Cache API.
      started = performance.now();
      const again = await Graft.create({ weights, backend });
      const cachedCreateSeconds = (performance.now() - started) / 1000;
      again.dispose();
      return {
        backendUsed,
        classes,
        createSeconds,
        cachedCreateSeconds,
        embedSeconds,
        epochs,
        report: training.result,
        frames: training.frames,
        trainSeconds: training.seconds,
        predictions,
        evaluation,
        model: Array.from(model),
        progress: [...new Set(progress)],
      };
    },
    { backend, normal, pneumonia, heldBack, weights: WEIGHTS, TRAINING },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(weightDownloads() - downloadsBefore, 1, 'the second start must use the cached weights');
  return result;
}

for (const backend of ['webgpu', 'cpu']) {
  test(`${backend}: trains on chest X-rays, predicts like the CLI, stays responsive`, async () => {
    const result = await trainOnBackend(backend);
    assert.equal(result.backendUsed, backend);
    assert.deepEqual(result.classes, [
      { label: 'NORMAL', count: PER_CLASS[backend] },
      { label: 'PNEUMONIA', count: PER_CLASS[backend] },
    ]);
    assert.deepEqual(result.progress.slice(-1), ['ready']);
    assert.equal(result.epochs.length, TRAINING.epochs);
    const best = result.report.history[result.report.bestEpoch - 1];
    assert.ok(best.valAccuracy >= 0.85, `validation accuracy ${best.valAccuracy}`);
    // A frozen main thread would stop requestAnimationFrame; demand at least 5 frames a second.
    assert.ok(result.frames >= 5 * result.trainSeconds, `${result.frames} frames in ${result.trainSeconds}s`);

    const files = HELD_BACK.map(([label, name]) => join(XRAY_DIR, label, name));
    assert.deepEqual(cliTopClasses(result.model, files), result.predictions);

    // evaluate() agrees with predict() on the held-back images.
    const correct = result.predictions.filter((label, i) => label === HELD_BACK[i][0]).length;
    assert.equal(result.evaluation.images, HELD_BACK.length);
    assert.equal(result.evaluation.accuracy, correct / HELD_BACK.length);
    assert.equal(result.evaluation.binary.positive, 'PNEUMONIA');
    assert.equal(result.evaluation.confusion.flat().reduce((a, b) => a + b, 0), HELD_BACK.length);
    assert.ok(result.evaluation.binary.rocAuc >= 0 && result.evaluation.binary.rocAuc <= 1);

    const images = 2 * PER_CLASS[backend];
    measurements[backend] = {
      images,
      createSeconds: +result.createSeconds.toFixed(2),
      cachedCreateSeconds: +result.cachedCreateSeconds.toFixed(2),
      embedImagesPerSecond: +(images / result.embedSeconds).toFixed(2),
      trainSeconds: +result.trainSeconds.toFixed(2),
      headStepsPerSecond: +((TRAINING.epochs * Math.ceil((images * (1 - TRAINING.validationSplit)) / TRAINING.batchSize)) / result.trainSeconds).toFixed(1),
      valAccuracy: best.valAccuracy,
      framesPerSecondDuringTraining: +(result.frames / result.trainSeconds).toFixed(1),
    };
  });
}

test('a CLI model predicts the same in the browser, on WebGPU and CPU alike', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-cli-'));
  const model = join(dir, 'cli.safetensors');
  const data = join(dir, 'data');
  for (const [label, names] of [['NORMAL', NORMAL], ['PNEUMONIA', PNEUMONIA]]) {
    mkdirSync(join(data, label), { recursive: true });
    for (const name of names.slice(0, 30)) copyFileSync(join(XRAY_DIR, label, name), join(data, label, name));
  }
  execFileSync(GRAFT_BIN, ['train', '--weights', WEIGHTS_FILE, '--data', data, '--epochs', '5', '--out', model], {
    stdio: 'ignore',
  });
  const files = HELD_BACK.map(([label, name]) => join(XRAY_DIR, label, name));
  const cli = execFileSync(GRAFT_BIN, ['predict', '--weights', WEIGHTS_FILE, '--model', model, '--json', ...files], {
    encoding: 'utf8',
  });
  const expected = JSON.parse(cli).map((entry) => entry.predictions[0].label);
  const { page, context } = await openHarness();
  const byBackend = await page.evaluate(
    async ({ weights, modelBytes, heldBack }) => {
      const results = {};
      for (const backend of ['cpu', 'webgpu']) {
        const graft = await Graft.load({ weights, model: new Uint8Array(modelBytes), backend });
        results[backend] = [];
        for (const file of await fetchImages(heldBack)) results[backend].push(await graft.predict(file, { topK: 2 }));
        graft.dispose();
      }
      return results;
    },
    {
      weights: WEIGHTS,
      modelBytes: Array.from(readFileSync(model)),
      heldBack: HELD_BACK.map(([label, name]) => url(label, name)),
    },
  );
  await context.close();
  for (const backend of ['cpu', 'webgpu']) {
    assert.deepEqual(byBackend[backend].map((top) => top[0].label), expected, backend);
  }
  // Same pixels, same weights: the two backends agree to float tolerance.
  const score = (top, label) => top.find((p) => p.label === label).score;
  byBackend.cpu.forEach((top, i) => {
    const gpu = byBackend.webgpu[i];
    for (const label of ['NORMAL', 'PNEUMONIA']) {
      assert.ok(Math.abs(score(top, label) - score(gpu, label)) < 1e-3, `image ${i} ${label}: ${score(top, label)} vs ${score(gpu, label)}`);
    }
  });
});

test("'auto' picks WebGPU where there is an adapter, and an AbortSignal stops training", async () => {
  const { page, context, errors } = await openHarness();
  const outcome = await page.evaluate(
    async ({ weights, normal, pneumonia }) => {
      const auto = await Graft.create({ weights, backend: 'auto' });
      const autoBackend = auto.backend;
      auto.dispose();
      const graft = await Graft.create({ weights, backend: 'cpu' });
      await graft.addExamples('NORMAL', await fetchImages(normal));
      await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      const controller = new AbortController();
      const seen = [];
      const report = await graft.train({
        epochs: 500,
        onEpoch: (e) => {
          seen.push(e.epoch);
          if (e.epoch === 3) controller.abort();
        },
        signal: controller.signal,
      });
      const prediction = await graft.predict((await fetchImages([normal[0]]))[0]);
      graft.dispose();
      return { autoBackend, seen: seen.length, report, predicted: prediction.length };
    },
    {
      weights: WEIGHTS,
      normal: NORMAL.slice(0, 6).map((n) => url('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, 6).map((n) => url('PNEUMONIA', n)),
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(outcome.autoBackend, 'webgpu');
  assert.ok(outcome.report.stoppedEarly);
  // The abort reaches the worker while epochs keep running (a few milliseconds each here).
  assert.ok(outcome.report.history.length >= 3 && outcome.report.history.length < 100, `${outcome.report.history.length} epochs`);
  assert.equal(outcome.seen, outcome.report.history.length);
  assert.equal(outcome.predicted, 2);
});

test('bad input is refused with a clear error and the instance stays usable', async () => {
  const { page, context, errors } = await openHarness();
  const outcome = await page.evaluate(
    async ({ weights, normal, pneumonia }) => {
      const failure = async (promise) => {
        try {
          await promise;
          return 'accepted';
        } catch (error) {
          return error.message;
        }
      };
      const weightBytes = await (await fetch(weights)).arrayBuffer();
      const result = {};
      result.truncatedWeights = await failure(Graft.create({ weights: weightBytes.slice(0, 1_000_000), backend: 'cpu' }));
      result.badBackend = await failure(Graft.create({ weights: weightBytes, backend: 'tpu' }));
      const graft = await Graft.create({ weights: weightBytes, backend: 'cpu' });
      const [good] = await fetchImages([normal[0]]);
      result.predictBeforeTrain = await failure(graft.predict(good));
      result.notAnImage = await failure(graft.addExamples('NORMAL', new Blob(['not an image'], { type: 'text/plain' })));
      result.zeroBytes = await failure(graft.addExamples('NORMAL', new File([], 'empty.jpg', { type: 'image/jpeg' })));
      result.emptyClass = await failure(graft.addExamples('NORMAL', []));
      const canvas = new OffscreenCanvas(12000, 12000);
      canvas.getContext('2d').fillRect(0, 0, 6000, 6000);
      const huge = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.5 });
      result.huge = await failure(graft.addExamples('NORMAL', new File([huge], 'huge.jpg', { type: 'image/jpeg' })));
      await graft.addExamples('NORMAL', await fetchImages(normal));
      result.oneClass = await failure(graft.train({ epochs: 1 }));
      result.unknownOption = await failure(graft.train({ epoch: 3 }));
      result.badOptionValue = await failure(graft.train({ learningRate: -1 }));
      // A bad file among good ones is skipped and reported, the good ones are kept.
      const mixed = [...(await fetchImages(pneumonia)), new File(['garbage'], 'broken.png', { type: 'image/png' })];
      result.mixed = await graft.addExamples('PNEUMONIA', mixed);
      result.classes = graft.classes();
      await graft.renameClass('PNEUMONIA', 'SICK');
      result.renamed = graft.classes().map((c) => c.label);
      result.renameClash = await failure(graft.renameClass('SICK', 'NORMAL'));
      result.removeUnknown = await failure(graft.removeClass('nope'));
      await graft.renameClass('SICK', 'PNEUMONIA');
      const report = await graft.train({ epochs: 2 });
      result.trainedEpochs = report.history.length;
      result.prediction = (await graft.predict(good))[0].label;
      await graft.removeClass('NORMAL');
      result.afterRemove = graft.classes();
      graft.dispose();
      result.afterDispose = await failure(graft.predict(good));
      return result;
    },
    {
      weights: WEIGHTS,
      normal: NORMAL.slice(0, 4).map((n) => url('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, 4).map((n) => url('PNEUMONIA', n)),
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.match(outcome.truncatedWeights, /weights: not a valid EfficientNet-Lite0 weights file/);
  assert.match(outcome.badBackend, /backend 'tpu' is not valid; use one of 'auto', 'webgpu', 'cpu'/);
  assert.match(outcome.predictBeforeTrain, /no trained model yet/);
  assert.match(outcome.notAnImage, /not an image the browser can decode/);
  assert.match(outcome.zeroBytes, /empty\.jpg: the file is empty/);
  assert.match(outcome.emptyClass, /no images were given/);
  assert.match(outcome.huge, /huge\.jpg: (12000x12000 pixels is too large|not an image the browser can decode)/);
  assert.match(outcome.oneClass, /at least 2 classes/);
  assert.match(outcome.unknownOption, /unknown option 'epoch'; valid options are epochs, batchSize/);
  assert.match(outcome.badOptionValue, /learningRate|learning rate/);
  assert.equal(outcome.mixed.added, 4);
  assert.deepEqual(outcome.mixed.skipped.map((s) => s.name), ['broken.png']);
  assert.deepEqual(outcome.classes, [
    { label: 'NORMAL', count: 4 },
    { label: 'PNEUMONIA', count: 4 },
  ]);
  assert.deepEqual(outcome.renamed, ['NORMAL', 'SICK']);
  assert.match(outcome.renameClash, /a class 'NORMAL' already exists/);
  assert.match(outcome.removeUnknown, /there is no class 'nope'/);
  assert.deepEqual(outcome.afterRemove, [{ label: 'PNEUMONIA', count: 4 }]);
  assert.equal(outcome.trainedEpochs, 2);
  assert.ok(['NORMAL', 'PNEUMONIA'].includes(outcome.prediction));
  assert.match(outcome.afterDispose, /disposed/);
});

test('privacy: no request left the test server, none carried data', () => {
  assert.ok(requestLog.length > 0, 'requests were recorded');
  const foreign = requestLog.filter((r) => !r.url.startsWith(`${server.origin}/`) && !r.url.startsWith('blob:') && !r.url.startsWith('data:'));
  assert.deepEqual(foreign, [], 'requests to other hosts');
  const withBody = requestLog.filter((r) => r.bodyBytes > 0 || !['GET', 'HEAD'].includes(r.method));
  assert.deepEqual(withBody, [], 'requests that send data');
  const serverSide = server.requests.filter((r) => r.bodyBytes > 0 || !['GET', 'HEAD'].includes(r.method));
  assert.deepEqual(serverSide, []);
});
