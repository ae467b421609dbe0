// Phase 2 through the JS API in headless Chromium: fine-tuning the backbone's last blocks on the
// images, on the CPU backend and on WebGPU; the model it exports holds the fine-tuned blocks and
// predicts the same in the CLI; cancelling mid-way keeps a usable model.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, openHarness as openHarnessPage } from './chromium.mjs';
import { repoRoot, sharedRoot, startServer } from './server.mjs';

const WEIGHTS = '/weights/efficientnet_lite0.safetensors';
const XRAY_DIR = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');
const GRAFT_BIN = process.env.GRAFT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
const WEIGHTS_FILE = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');
const files = (label) => readdirSync(join(XRAY_DIR, label)).sort();
const NORMAL = files('NORMAL');
const PNEUMONIA = files('PNEUMONIA');
const url = (label, name) => `/datasets/chest_xray_pneumonia/${label}/${name}`;
const HELD_BACK = [['NORMAL', NORMAL.at(-1)], ['PNEUMONIA', PNEUMONIA.at(-1)], ['NORMAL', NORMAL.at(-2)], ['PNEUMONIA', PNEUMONIA.at(-2)]];

let server;
let browser;
const measurements = {};

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  console.log('fine-tuning measurements', JSON.stringify(measurements, null, 2));
});

const openHarness = () => openHarnessPage(browser, server.origin);

/** Adds `perClass` X-rays per class, fine-tunes with `options`, predicts the held-back images. */
async function fineTune(backend, perClass, options, { abortOnFirstStep = false } = {}) {
  const { page, context, errors } = await openHarness();
  const result = await page.evaluate(
    async ({ backend, normal, pneumonia, heldBack, weights, options, abortOnFirstStep }) => {
      const graft = await Graft.create({ weights, backend });
      await graft.addExamples('NORMAL', await fetchImages(normal));
      await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      const epochs = [];
      const steps = [];
      const controller = new AbortController();
      const training = await countFrames(() =>
        graft.train({
          ...options,
          signal: controller.signal,
          onEpoch: (e) => epochs.push(e),
          onProgress: (p) => {
            steps.push(p);
            if (abortOnFirstStep) controller.abort();
          },
        }),
      );
      const heldBackFiles = await fetchImages(heldBack);
      const predictions = [];
      for (const file of heldBackFiles) predictions.push(await graft.predict(file, { topK: 2 }));
      const model = await graft.exportModel();
      const { wasmMemoryBytes } = await graft.stats();
      // The exported file loads into a fresh engine and predicts the same.
      const loaded = await Graft.load({ weights, model, backend });
      const reloaded = [];
      for (const file of heldBackFiles) reloaded.push(await loaded.predict(file, { topK: 2 }));
      loaded.dispose();
      graft.dispose();
      return { report: training.result, frames: training.frames, seconds: training.seconds, epochs, steps, predictions, reloaded, model: Array.from(model), wasmMemoryBytes };
    },
    {
      backend,
      normal: NORMAL.slice(0, perClass).map((n) => url('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, perClass).map((n) => url('PNEUMONIA', n)),
      heldBack: HELD_BACK.map(([label, name]) => url(label, name)),
      weights: WEIGHTS,
      options,
      abortOnFirstStep,
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  return result;
}

function modelHeader(bytes) {
  const buffer = Buffer.from(bytes);
  const length = Number(buffer.readBigUInt64LE(0));
  const header = JSON.parse(buffer.subarray(8, 8 + length).toString('utf8'));
  return { info: JSON.parse(header.__metadata__['graft.model']), tensors: Object.keys(header).filter((k) => k !== '__metadata__') };
}

function cliPredictions(modelBytes) {
  const dir = mkdtempSync(join(tmpdir(), 'graft-ft-'));
  const model = join(dir, 'model.safetensors');
  writeFileSync(model, Buffer.from(modelBytes));
  const paths = HELD_BACK.map(([label, name]) => join(XRAY_DIR, label, name));
  const out = execFileSync(GRAFT_BIN, ['predict', '--weights', WEIGHTS_FILE, '--model', model, '--json', ...paths], { encoding: 'utf8' });
  return JSON.parse(out).map((entry) => entry.predictions);
}

/** The CLI reading the exported file gives the browser's top classes on the held-back images. */
function agreesWithCli(result) {
  const cli = cliPredictions(result.model);
  for (const [i, predictions] of result.predictions.entries()) {
    // The browser decodes and downsizes images itself, so scores differ slightly.
    assert.equal(cli[i][0].label, predictions[0].label, `CLI and browser agree on held-back image ${i}`);
    assert.ok(Math.abs(cli[i][0].score - predictions[0].score) < 0.02, `${cli[i][0].score} vs ${predictions[0].score}`);
  }
}

/** The checks every fine-tuning run must pass, whatever the backend. */
function checkRun(result, { blocks, epochs }) {
  const { report, steps } = result;
  const tune = report.fineTune;
  assert.ok(tune, 'the report has a fineTune section');
  assert.equal(tune.plan.blocks, blocks);
  assert.ok(tune.notes.length >= 3 && tune.notes[0].startsWith('fine-tune: last'), tune.notes.join('\n'));
  assert.equal(tune.history.length, epochs);
  const validated = report.validationImages > 0;
  if (validated) assert.ok(tune.baseline && tune.baseline.epoch === 0, 'phase 1 measured first');
  else assert.equal(tune.bestEpoch, epochs, 'without validation the last epoch is kept');
  // Step progress counts up to the total, one event per optimiser step.
  assert.deepEqual(steps.map((s) => s.step), Array.from({ length: steps.length }, (_, i) => i + 1));
  assert.equal(steps.at(-1).step, steps.at(-1).totalSteps);
  assert.ok(result.epochs.some((e) => e.phase === 'head') && result.epochs.some((e) => e.phase === 'fineTune'));
  // The report's final evaluation is the kept model's: the best epoch's validation accuracy.
  if (validated) {
    const kept = tune.bestEpoch > 0 ? tune.history[tune.bestEpoch - 1] : tune.baseline;
    assert.ok(Math.abs(report.validation.accuracy - kept.valAccuracy) < 1e-6, `${report.validation.accuracy} vs ${kept.valAccuracy}`);
  }
  // The exported file holds the fine-tuned blocks exactly when an epoch beat phase 1.
  const { info, tensors } = modelHeader(result.model);
  if (tune.bestEpoch > 0) {
    assert.equal(info.fineTuned.blocks, blocks);
    assert.ok(tensors.some((t) => t.startsWith('backbone.blocks.')), 'fine-tuned blocks stored');
  } else {
    assert.equal(info.fineTuned, undefined);
    assert.ok(!tensors.some((t) => t.startsWith('backbone.')));
  }
  // A fresh engine loading the exported file predicts what the trained one did.
  for (const [i, predictions] of result.predictions.entries()) {
    assert.equal(result.reloaded[i][0].label, predictions[0].label);
    assert.ok(Math.abs(result.reloaded[i][0].score - predictions[0].score) < 1e-4);
  }
  // The main thread kept drawing.
  assert.ok(result.frames >= 5 * result.seconds, `${result.frames} frames in ${result.seconds}s`);
}

test('cpu: fine-tunes the last 2 blocks, exports them, and the CLI predicts the same', async () => {
  const options = { epochs: 10, batchSize: 8, learningRate: 0.003, validationSplit: 0.25, fineTuneBlocks: 2, fineTuneEpochs: 2, patience: 0, augment: { flip: false } };
  const result = await fineTune('cpu', 30, options);
  checkRun(result, { blocks: 2, epochs: 2 });
  agreesWithCli(result);
  measurements.cpu = {
    images: 60,
    totalSeconds: +result.seconds.toFixed(1),
    secondsPerFineTuneEpoch: result.report.fineTune.secondsPerEpoch.map((s) => +s.toFixed(1)),
    bestEpoch: result.report.fineTune.bestEpoch,
    validationAccuracy: result.report.validation.accuracy,
    modelBytes: result.model.length,
    wasmMemoryMB: +(result.wasmMemoryBytes / 1048576).toFixed(1),
  };
});

test('webgpu: fine-tuning runs end to end on the GPU path and exports the blocks', async () => {
  // No validation split: the last epoch is kept, so the fine-tuned export path always runs.
  const options = { epochs: 5, batchSize: 4, validationSplit: 0, fineTuneBlocks: 1, fineTuneEpochs: 1, fineTuneBatchSize: 4, patience: 0, augment: { flip: false } };
  const result = await fineTune('webgpu', 8, options);
  checkRun(result, { blocks: 1, epochs: 1 });
  agreesWithCli(result);
  measurements.webgpu = {
    images: 16,
    totalSeconds: +result.seconds.toFixed(1),
    secondsPerFineTuneEpoch: result.report.fineTune.secondsPerEpoch.map((s) => +s.toFixed(1)),
    bestEpoch: result.report.fineTune.bestEpoch,
    modelBytes: result.model.length,
    wasmMemoryMB: +(result.wasmMemoryBytes / 1048576).toFixed(1),
  };
});

test('stopping during fine-tuning keeps a model that predicts', async () => {
  const options = { epochs: 3, validationSplit: 0.25, fineTuneBlocks: 2, fineTuneEpochs: 3 };
  const result = await fineTune('cpu', 12, options, { abortOnFirstStep: true });
  assert.equal(result.report.fineTune.cancelled, true);
  // The stop request reaches the worker between steps: at most one more step runs.
  assert.ok(result.steps.length <= 2 && result.steps.length < result.steps[0].totalSteps, `${result.steps.length} steps ran`);
  assert.equal(result.report.fineTune.bestEpoch, 0, 'no epoch finished: the head from phase 1 is kept');
  assert.equal(result.predictions.length, HELD_BACK.length);
  assert.equal(modelHeader(result.model).info.fineTuned, undefined);
});

test('fine-tuning options are checked before anything runs', async () => {
  const { page, context } = await openHarness();
  const messages = await page.evaluate(async (weights) => {
    const graft = await Graft.create({ weights, backend: 'cpu' });
    const failure = (promise) => promise.then(() => 'no error', (e) => e.message);
    const out = {
      augment: await failure(graft.train({ augment: { mirror: true } })),
      balance: await failure(graft.train({ balance: 'yes' })),
      blocks: await failure(graft.train({ fineTuneBlocks: 99 })),
    };
    graft.dispose();
    return out;
  }, WEIGHTS);
  await context.close();
  assert.match(messages.augment, /option 'augment' must be an object of booleans with keys among flip, crop, rotate, brightness, contrast/);
  assert.match(messages.balance, /option 'balance' must be one of 'auto', 'on', 'off'/);
  assert.match(messages.blocks, /blocks|16/);
});
