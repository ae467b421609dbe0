// Phase 2 through the JS API in headless Chromium: fine-tuning the backbone's last blocks on the
// images, on the CPU backend and on WebGPU; the model it exports holds the fine-tuned blocks and
// predicts the same in the CLI; cancelling mid-way keeps a usable model. Every test stands alone.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { WEIGHTS, cliPredictions, modelHeader, temporaryFile, useBrowser, xrayFiles, xrayUrl } from './fixtures.mjs';

const NORMAL = xrayFiles('NORMAL');
const PNEUMONIA = xrayFiles('PNEUMONIA');
const HELD_BACK = [['NORMAL', NORMAL.at(-1)], ['PNEUMONIA', PNEUMONIA.at(-1)], ['NORMAL', NORMAL.at(-2)], ['PNEUMONIA', PNEUMONIA.at(-2)]];

const session = useBrowser();
const measurements = {};

after(() => console.log('fine-tuning measurements', JSON.stringify(measurements, null, 2)));

/** Adds `perClass` X-rays per class, fine-tunes with `options`, predicts the held-back images. */
async function fineTune(backend, perClass, options, { abortOnFirstStep = false } = {}) {
  const { page, context, errors } = await session.openHarness();
  const result = await page.evaluate(
    async ({ backend, normal, pneumonia, heldBack, weights, options, abortOnFirstStep }) => {
      const graft = await Graft.create({ weights, backend });
      await graft.addExamples('NORMAL', await fetchImages(normal));
      await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      const events = [];
      const controller = new AbortController();
      const training = await countFrames(() =>
        graft.train({
          ...options,
          signal: controller.signal,
          onProgress: (event) => {
            events.push(event);
            if (abortOnFirstStep && event.status === 'step') controller.abort();
          },
        }),
      );
      // PNG copies of the held-back X-rays, so that the CLI sees the browser's pixels.
      const { files: heldBackFiles, base64: pngs } = await pngCopies(await fetchImages(heldBack));
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
      return { report: training.result, frames: training.frames, seconds: training.seconds, events, predictions, reloaded, pngs, model: Array.from(model), wasmMemoryBytes };
    },
    {
      backend,
      normal: NORMAL.slice(0, perClass).map((n) => xrayUrl('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, perClass).map((n) => xrayUrl('PNEUMONIA', n)),
      heldBack: HELD_BACK.map(([label, name]) => xrayUrl(label, name)),
      weights: WEIGHTS,
      options,
      abortOnFirstStep,
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  return result;
}

/** The CLI reading the exported file gives the browser's predictions on the held-back images. */
function agreesWithCli(result) {
  const paths = result.pngs.map((base64, i) => temporaryFile(`held-back-${i}.png`, Buffer.from(base64, 'base64')));
  const cli = cliPredictions(result.model, paths);
  for (const [i, predictions] of result.predictions.entries()) {
    // The same pixels: equal up to float rounding (fused multiply-adds natively, not in wasm).
    assert.equal(cli[i][0].label, predictions[0].label, `CLI and browser agree on held-back image ${i}`);
    assert.ok(Math.abs(cli[i][0].score - predictions[0].score) < 1e-3, `${cli[i][0].score} vs ${predictions[0].score}`);
  }
}

/** The checks every fine-tuning run must pass, whatever the backend. */
function checkRun(result, { blocks, epochs }) {
  const { report, events } = result;
  const steps = events.filter((e) => e.status === 'step');
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
  // One event stream: the head's search and solution, then phase 2's baseline, steps and epochs.
  const order = [...new Set(events.map((e) => e.status))].filter((s) => s !== 'note');
  assert.deepEqual(order, validated ? ['search', 'head', 'baseline', 'step', 'epoch'] : ['search', 'head', 'step', 'epoch']);
  assert.equal(events.filter((e) => e.status === 'epoch').length, epochs);
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
  // Augmented (no flips on X-rays), so the browser's augmentation path runs.
  const options = { validationSplit: 0.25, fineTuneBlocks: 2, epochs: 2, batchSize: 8, patience: 0, augment: { crop: true, rotate: true, brightness: true, contrast: true } };
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
  const options = { validationSplit: 0, fineTuneBlocks: 1, epochs: 1, batchSize: 4, patience: 0 };
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
  const options = { validationSplit: 0.25, fineTuneBlocks: 2, epochs: 3 };
  const result = await fineTune('cpu', 12, options, { abortOnFirstStep: true });
  const steps = result.events.filter((e) => e.status === 'step');
  assert.equal(result.report.stopped, true);
  // The stop request reaches the worker between steps: at most one more step runs.
  assert.ok(steps.length <= 2 && steps.length < steps[0].totalSteps, `${steps.length} steps ran`);
  assert.equal(result.report.fineTune.bestEpoch, 0, 'no epoch finished: the head from phase 1 is kept');
  assert.equal(result.predictions.length, HELD_BACK.length);
  assert.equal(modelHeader(result.model).info.fineTuned, undefined);
});
