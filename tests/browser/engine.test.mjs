// The browser engine in real headless Chromium with a real WebGPU adapter (SwiftShader here):
// training on both backends, agreement with the CLI, examples by id, error codes, privacy and
// responsiveness. Every test stands alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { WEIGHTS, XRAY_DIR, cliPredictions, graft, useBrowser, xrayFiles, xrayUrl } from './fixtures.mjs';

const NORMAL = xrayFiles('NORMAL');
const PNEUMONIA = xrayFiles('PNEUMONIA');
// SwiftShader runs WebGPU on the CPU (about 0.6 images/s here), so that backend gets fewer images.
const PER_CLASS = { webgpu: 20, cpu: 40 };
if (process.env.GRAFT_BROWSER_IMAGES_PER_CLASS) PER_CLASS.webgpu = PER_CLASS.cpu = Number(process.env.GRAFT_BROWSER_IMAGES_PER_CLASS);
const HELD_BACK = [...NORMAL.slice(-3).map((n) => ['NORMAL', n]), ...PNEUMONIA.slice(-3).map((n) => ['PNEUMONIA', n])];
const heldBackUrls = HELD_BACK.map(([label, name]) => xrayUrl(label, name));
const heldBackPaths = HELD_BACK.map(([label, name]) => join(XRAY_DIR, label, name));

const session = useBrowser();
const measurements = {};

/** ROC AUC of `scores` for the positives, pairs tied counting half: what the engine must report. */
function rocAuc(scores, positive) {
  let wins = 0;
  let pairs = 0;
  scores.forEach((p, i) => {
    if (!positive[i]) return;
    scores.forEach((n, j) => {
      if (positive[j]) return;
      pairs++;
      wins += p > n ? 1 : p === n ? 0.5 : 0;
    });
  });
  return wins / pairs;
}

async function trainOnBackend(backend) {
  const { page, context, errors } = await session.openHarness();
  const weightDownloads = () => session.server.requests.filter((r) => r.url === WEIGHTS).length;
  const downloadsBefore = weightDownloads();
  const normal = NORMAL.slice(0, PER_CLASS[backend]).map((n) => xrayUrl('NORMAL', n));
  const pneumonia = PNEUMONIA.slice(0, PER_CLASS[backend]).map((n) => xrayUrl('PNEUMONIA', n));
  const result = await page.evaluate(
    async ({ backend, normal, pneumonia, heldBack, weights }) => {
      const progress = [];
      let started = performance.now();
      const graft = await Graft.create({ weights, backend, onProgress: (p) => progress.push(p.status) });
      const createSeconds = (performance.now() - started) / 1000;
      started = performance.now();
      // Named as the CLI names files: by their path under the dataset folder.
      for (const [label, urls] of [['NORMAL', normal], ['PNEUMONIA', pneumonia]]) {
        const files = await fetchImages(urls);
        await graft.addExamples(label, files, { ids: files.map((f) => `${label}/${f.name}`) });
      }
      const embedSeconds = (performance.now() - started) / 1000;
      const events = [];
      const training = await countFrames(() => graft.train({ validationSplit: 0.25, onProgress: (e) => events.push(e) }));
      const predictions = [];
      for (const file of await fetchImages(heldBack)) predictions.push(await graft.predict(file, { topK: 2 }));
      const evaluation = await graft.evaluate((await fetchImages(heldBack)).map((image, i) => ({ image, label: heldBack[i].split('/').at(-2) })));
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
        events,
        report: training.result,
        frames: training.frames,
        trainSeconds: training.seconds,
        predictions,
        evaluation,
        model: Array.from(model),
        progress: [...new Set(progress)],
      };
    },
    { backend, normal, pneumonia, heldBack: heldBackUrls, weights: WEIGHTS },
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
    const { report, events } = result;
    // The head's penalty was cross-validated along the path, one event per strength, then solved.
    const searched = events.filter((e) => e.status === 'search');
    assert.ok(searched.length >= 3, `${searched.length} strengths`);
    assert.deepEqual(searched.map((e) => e.l2), report.head.search.map((t) => t.l2));
    assert.equal(events.filter((e) => e.status === 'head').length, 1);
    assert.equal(report.head.l2Source, 'crossValidation');
    assert.equal(report.validationExamples.length, report.validationImages);
    // The CLI on the same files holds out the same images and scores them the same.
    const { mkdirSync, copyFileSync, mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const data = mkdtempSync(join(tmpdir(), 'graft-same-'));
    for (const [label, names] of [['NORMAL', NORMAL], ['PNEUMONIA', PNEUMONIA]]) {
      mkdirSync(join(data, label));
      for (const name of names.slice(0, PER_CLASS[backend])) copyFileSync(join(XRAY_DIR, label, name), join(data, label, name));
    }
    const cliReport = JSON.parse(graft(['train', '--data', data, '--validation-split', '0.25', '--out', join(data, 'm.safetensors'), '--json']));
    assert.deepEqual(report.validationExamples.map((e) => e.id), cliReport.validationExamples.map((e) => e.id));
    assert.equal(report.head.l2, cliReport.head.l2);
    assert.equal(report.validation.accuracy, cliReport.validation.accuracy);
    if (backend === 'cpu') assert.ok(report.validation.accuracy >= 0.85, `validation accuracy ${report.validation.accuracy}`);
    // A frozen main thread would stop requestAnimationFrame; demand at least 5 frames a second.
    assert.ok(result.frames >= 5 * result.trainSeconds, `${result.frames} frames in ${result.trainSeconds}s`);

    const cli = cliPredictions(result.model, heldBackPaths);
    assert.deepEqual(cli.map((p) => p[0].label), result.predictions.map((p) => p[0].label));

    // evaluate() agrees with predict() on the held-back images, its AUC included.
    const correct = result.predictions.filter((p, i) => p[0].label === HELD_BACK[i][0]).length;
    assert.equal(result.evaluation.images, HELD_BACK.length);
    assert.equal(result.evaluation.accuracy, correct / HELD_BACK.length);
    assert.equal(result.evaluation.binary.positive, 'PNEUMONIA');
    assert.equal(result.evaluation.confusion.flat().reduce((a, b) => a + b, 0), HELD_BACK.length);
    const pneumoniaScore = result.predictions.map((p) => p.find((x) => x.label === 'PNEUMONIA').score);
    const expectedAuc = rocAuc(pneumoniaScore, HELD_BACK.map(([label]) => label === 'PNEUMONIA'));
    assert.ok(Math.abs(result.evaluation.binary.rocAuc - expectedAuc) < 1e-9, `${result.evaluation.binary.rocAuc} vs ${expectedAuc}`);

    const images = 2 * PER_CLASS[backend];
    measurements[backend] = {
      images,
      createSeconds: +result.createSeconds.toFixed(2),
      cachedCreateSeconds: +result.cachedCreateSeconds.toFixed(2),
      embedImagesPerSecond: +(images / result.embedSeconds).toFixed(2),
      trainSeconds: +result.trainSeconds.toFixed(2),
      headL2: report.head.l2,
      valAccuracy: report.validation.accuracy,
      framesPerSecondDuringTraining: +(result.frames / result.trainSeconds).toFixed(1),
    };
    console.log('measurements', JSON.stringify(measurements));
  });
}

test('a CLI model predicts the same in the browser, on WebGPU and CPU alike', async () => {
  const { mkdirSync, copyFileSync, mkdtempSync, readFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'graft-cli-'));
  const data = join(dir, 'data');
  for (const [label, names] of [['NORMAL', NORMAL], ['PNEUMONIA', PNEUMONIA]]) {
    mkdirSync(join(data, label), { recursive: true });
    for (const name of names.slice(0, 30)) copyFileSync(join(XRAY_DIR, label, name), join(data, label, name));
  }
  const model = join(dir, 'cli.safetensors');
  graft(['train', '--data', data, '--out', model]);
  const expected = cliPredictions(readFileSync(model), heldBackPaths);
  const { page, context } = await session.openHarness();
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
    { weights: WEIGHTS, modelBytes: Array.from(readFileSync(model)), heldBack: heldBackUrls },
  );
  await context.close();
  const score = (top, label) => top.find((p) => p.label === label).score;
  for (const backend of ['cpu', 'webgpu']) {
    assert.deepEqual(byBackend[backend].map((top) => top[0].label), expected.map((top) => top[0].label), backend);
    // Same file, same preprocessing: the CLI's probabilities up to JPEG decoder rounding.
    byBackend[backend].forEach((top, i) => {
      assert.ok(Math.abs(score(top, 'PNEUMONIA') - score(expected[i], 'PNEUMONIA')) < 0.01, `${backend} image ${i}`);
    });
  }
  // Same pixels, same weights: the two backends agree to float tolerance.
  byBackend.cpu.forEach((top, i) => {
    const gpu = byBackend.webgpu[i];
    for (const label of ['NORMAL', 'PNEUMONIA']) {
      assert.ok(Math.abs(score(top, label) - score(gpu, label)) < 1e-3, `image ${i} ${label}: ${score(top, label)} vs ${score(gpu, label)}`);
    }
  });
});

test("'auto' picks WebGPU where there is an adapter; an aborted signal stops training before it starts", async () => {
  const { page, context, errors } = await session.openHarness();
  const outcome = await page.evaluate(
    async ({ weights, normal, pneumonia }) => {
      const auto = await Graft.create({ weights, backend: 'auto' });
      const autoBackend = auto.backend;
      auto.dispose();
      const graft = await Graft.create({ weights, backend: 'cpu' });
      await graft.addExamples('NORMAL', await fetchImages(normal));
      await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      const controller = new AbortController();
      controller.abort();
      const aborted = await graft.train({ signal: controller.signal }).then(() => null, (e) => e.code);
      const prediction = await graft.predict((await fetchImages([normal[0]]))[0]).then(() => 'predicted', (e) => e.code);
      graft.dispose();
      return { autoBackend, aborted, prediction };
    },
    {
      weights: WEIGHTS,
      normal: NORMAL.slice(0, 6).map((n) => xrayUrl('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, 6).map((n) => xrayUrl('PNEUMONIA', n)),
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(outcome.autoBackend, 'webgpu');
  assert.equal(outcome.aborted, 'ABORTED');
  assert.equal(outcome.prediction, 'NO_MODEL', 'nothing was trained');
});

test('examples have ids: one image is removed, duplicates are refused, renames need no bookkeeping', async () => {
  const { page, context, errors } = await session.openHarness();
  const outcome = await page.evaluate(
    async ({ weights, normal, pneumonia }) => {
      const graft = await Graft.create({ weights, backend: 'cpu' });
      const normalFiles = await fetchImages(normal);
      const added = await graft.addExamples('NORMAL', normalFiles, { ids: normal.map((_, i) => `n${i}`) });
      const sick = await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      // The same image again, in either class, under another name: refused, named.
      const again = await graft.addExamples('PNEUMONIA', [new File([normalFiles[0]], 'copy.jpeg', { type: 'image/jpeg' })]).then(
        () => null,
        (e) => ({ code: e.code, skipped: e.skipped }),
      );
      await graft.removeExamples(['n0']);
      const afterRemove = graft.classes();
      const unknown = await graft.removeExamples(['nope']).then(() => null, (e) => e.code);
      // The removed image may come back.
      await graft.addExamples('NORMAL', [normalFiles[0]], { ids: ['n0-again'] });
      // Renamed, then fine-tuned: the worker finds each image by id, whatever its class's name.
      await graft.renameClass('PNEUMONIA', 'SICK');
      const report = await graft.train({ validationSplit: 0.25, fineTuneBlocks: 1, epochs: 1, batchSize: 4 });
      graft.dispose();
      return { added, sickIds: sick.added.map((a) => a.id), again, afterRemove, unknown, report };
    },
    {
      weights: WEIGHTS,
      normal: NORMAL.slice(0, 8).map((n) => xrayUrl('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, 8).map((n) => xrayUrl('PNEUMONIA', n)),
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.deepEqual(outcome.added.added.map((a) => a.id), ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7']);
  assert.ok(outcome.added.added.every((a) => /^[0-9a-f]{16}$/.test(a.hash)));
  assert.ok(outcome.sickIds.every((id) => /^[0-9a-f-]{36}$/.test(id)), 'ids are made when not given');
  assert.equal(outcome.again.code, 'ALREADY_EXISTS');
  assert.match(outcome.again.skipped[0].reason, /copy\.jpeg: the same image as 'n0' in class 'NORMAL'/);
  assert.deepEqual(outcome.afterRemove, [{ label: 'NORMAL', count: 7 }, { label: 'PNEUMONIA', count: 8 }]);
  assert.equal(outcome.unknown, 'NOT_FOUND');
  const { report } = outcome;
  assert.deepEqual(report.labels, ['NORMAL', 'SICK']);
  assert.equal(report.trainImages + report.validationImages, 16);
  assert.equal(report.fineTune.history.length, 1);
  const known = new Set(['n0-again', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', ...outcome.sickIds]);
  assert.ok(report.validationExamples.every((e) => known.has(e.id)), 'held-out images are named by id');
});

test('bad input is refused with a clear error and a code, and the instance stays usable', async () => {
  const { page, context, errors } = await session.openHarness();
  const outcome = await page.evaluate(
    async ({ weights, normal, pneumonia }) => {
      const failure = (promise) =>
        promise.then(
          () => 'accepted',
          (error) => ({ code: error.code, message: error.message }),
        );
      const weightBytes = await (await fetch(weights)).arrayBuffer();
      const result = {};
      result.truncatedWeights = await failure(Graft.create({ weights: weightBytes.slice(0, 1_000_000), backend: 'cpu' }));
      // A download is stored as it arrives: one the engine refuses must not stay for the next visit.
      result.notWeights = await failure(Graft.create({ weights: '/README.md', backend: 'cpu' }));
      result.notWeightsKept = Boolean(await (await caches.open('graft-weights-v1')).match(new URL('/README.md', location.href).href));
      // Nor may bad weights stored earlier (by a version that checked less) stay for good.
      const stale = new URL('/weights/stale.safetensors', location.href).href;
      await (await caches.open('graft-weights-v1')).put(stale, new Response(weightBytes.slice(0, 1_000_000)));
      result.staleWeights = await failure(Graft.create({ weights: stale, backend: 'cpu' }));
      result.staleWeightsKept = Boolean(await (await caches.open('graft-weights-v1')).match(stale));
      result.badBackend = await failure(Graft.create({ weights: weightBytes, backend: 'tpu' }));
      const graft = await Graft.create({ weights: weightBytes, backend: 'cpu' });
      const [good] = await fetchImages([normal[0]]);
      result.predictBeforeTrain = await failure(graft.predict(good));
      result.notAnImage = await failure(graft.addExamples('NORMAL', new Blob(['not an image'], { type: 'text/plain' })));
      result.zeroBytes = await failure(graft.addExamples('NORMAL', new File([], 'empty.jpg', { type: 'image/jpeg' })));
      result.emptyClass = await failure(graft.addExamples('NORMAL', []));
      // 144 megapixels in a small file: refused from its header, before the browser decodes it.
      const canvas = new OffscreenCanvas(12000, 12000);
      canvas.getContext('2d').fillRect(0, 0, 6000, 6000);
      const huge = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.5 });
      result.huge = await failure(graft.addExamples('NORMAL', new File([huge], 'huge.jpg', { type: 'image/jpeg' })));
      // A 20000x1 sliver: its resize to a 256-pixel short side once killed the engine for good.
      const sliverCanvas = new OffscreenCanvas(20000, 1);
      sliverCanvas.getContext('2d').fillRect(0, 0, 100, 1);
      const sliver = await sliverCanvas.convertToBlob({ type: 'image/png' });
      result.sliver = await failure(graft.addExamples('NORMAL', new File([sliver], 'sliver.png', { type: 'image/png' })));
      await graft.addExamples('NORMAL', await fetchImages(normal));
      result.oneClass = await failure(graft.train());
      result.unknownOption = await failure(graft.train({ epoch: 3 }));
      result.badOptionValue = await failure(graft.train({ learningRate: -1 }));
      result.badBalance = await failure(graft.train({ balance: 'yes' }));
      result.badAugment = await failure(graft.train({ augment: { mirror: true } }));
      result.badBlocks = await failure(graft.train({ fineTuneBlocks: 99 }));
      // A bad file among good ones is skipped and reported, the good ones are kept.
      const mixed = [...(await fetchImages(pneumonia)), new File(['garbage'], 'broken.png', { type: 'image/png' })];
      result.mixed = await graft.addExamples('PNEUMONIA', mixed);
      result.classes = graft.classes();
      await graft.renameClass('PNEUMONIA', 'SICK');
      result.renamed = graft.classes().map((c) => c.label);
      result.renameClash = await failure(graft.renameClass('SICK', 'NORMAL'));
      result.removeUnknown = await failure(graft.removeClass('nope'));
      await graft.renameClass('SICK', 'PNEUMONIA');
      const report = await graft.train();
      result.trained = report.head.converged;
      result.prediction = (await graft.predict(good))[0].label;
      // A model file edited to declare a billion hidden units once aborted the engine for good:
      // now it is refused before anything is allocated, and the model in use stays.
      const exported = await graft.exportModel();
      const headerLength = Number(new DataView(exported.buffer, exported.byteOffset).getBigUint64(0, true));
      const header = new TextDecoder().decode(exported.subarray(8, 8 + headerLength));
      const edited = new TextEncoder().encode(header.replace('\\"hiddenUnits\\":null', '\\"hiddenUnits\\":1000000000'));
      const hostile = new Uint8Array(8 + edited.length + exported.length - 8 - headerLength);
      new DataView(hostile.buffer).setBigUint64(0, BigInt(edited.length), true);
      hostile.set(edited, 8);
      hostile.set(exported.subarray(8 + headerLength), 8 + edited.length);
      result.hostileModel = await failure(graft.loadModel(hostile));
      result.afterHostileModel = (await graft.predict(good))[0].label;
      await graft.removeClass('NORMAL');
      result.afterRemove = graft.classes();
      graft.dispose();
      result.afterDispose = await failure(graft.predict(good));
      return result;
    },
    {
      weights: WEIGHTS,
      normal: NORMAL.slice(0, 4).map((n) => xrayUrl('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, 4).map((n) => xrayUrl('PNEUMONIA', n)),
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  const check = (name, code, pattern) => {
    assert.equal(outcome[name].code, code, `${name}: ${JSON.stringify(outcome[name])}`);
    assert.match(outcome[name].message, pattern, name);
  };
  check('truncatedWeights', 'BAD_FILE', /weights: not a valid EfficientNet-Lite0 weights file/);
  check('notWeights', 'BAD_FILE', /weights: not a valid EfficientNet-Lite0 weights file/);
  assert.equal(outcome.notWeightsKept, false, 'refused weights are not kept in the cache');
  check('staleWeights', 'BAD_FILE', /weights: not a valid EfficientNet-Lite0 weights file/);
  assert.equal(outcome.staleWeightsKept, false, 'refused weights from the cache are removed');
  check('badBackend', 'INVALID_ARGUMENT', /backend 'tpu' is not valid; use one of 'auto', 'webgpu', 'cpu'/);
  check('predictBeforeTrain', 'NO_MODEL', /no trained model yet/);
  check('notAnImage', 'BAD_IMAGE', /not a usable image \(not a JPEG, PNG, WebP, GIF or BMP image\)/);
  check('zeroBytes', 'BAD_IMAGE', /empty\.jpg: not a usable image \(the file is empty\)/);
  check('emptyClass', 'INVALID_OPTION', /no images were given/);
  check('huge', 'BAD_IMAGE', /huge\.jpg: not a usable image \(12000x12000 pixels is more than the 50-megapixel limit; downscale it first\)/);
  check('sliver', 'BAD_IMAGE', /sliver\.png: not a usable image \(20000x1: one side is more than 100 times the other; crop it first\)/);
  check('oneClass', 'INVALID_OPTION', /at least 2 classes/);
  check('unknownOption', 'INVALID_OPTION', /unknown field `epoch`, expected one of `validationSplit`/);
  check('badOptionValue', 'INVALID_OPTION', /learningRate: -1/);
  check('badBalance', 'INVALID_OPTION', /unknown variant `yes`, expected one of `auto`, `on`, `off`/);
  check('badAugment', 'INVALID_OPTION', /unknown field `mirror`, expected one of `flip`, `crop`, `rotate`, `brightness`, `contrast`/);
  check('badBlocks', 'INVALID_OPTION', /fineTuneBlocks: 99 \(use 0 for the head only, up to 16\)/);
  check('hostileModel', 'BAD_FILE', /model file: not a valid Graft model file \(hiddenUnits 1000000000 is outside 1 to 4096\)/);
  assert.equal(outcome.afterHostileModel, outcome.prediction, 'the model in use stays');
  check('renameClash', 'ALREADY_EXISTS', /a class 'NORMAL' already exists/);
  check('removeUnknown', 'NOT_FOUND', /there is no class 'nope'/);
  check('afterDispose', 'DISPOSED', /disposed/);
  assert.equal(outcome.mixed.added.length, 4);
  assert.deepEqual(outcome.mixed.skipped.map((s) => [s.name, s.code]), [['broken.png', 'BAD_IMAGE']]);
  assert.deepEqual(outcome.classes, [
    { label: 'NORMAL', count: 4 },
    { label: 'PNEUMONIA', count: 4 },
  ]);
  assert.deepEqual(outcome.renamed, ['NORMAL', 'SICK']);
  assert.equal(outcome.trained, true);
  assert.ok(['NORMAL', 'PNEUMONIA'].includes(outcome.prediction));
  assert.deepEqual(outcome.afterRemove, [{ label: 'PNEUMONIA', count: 4 }]);
});

test('a dead engine: the call in flight and every later one fail with ENGINE_CRASHED, and onCrash hears it once', async () => {
  const { page, context, errors } = await session.openHarness();
  await page.evaluate(async ({ weights, normal }) => {
    globalThis.crashes = [];
    globalThis.graft = await Graft.create({ weights, backend: 'cpu', onCrash: (error) => globalThis.crashes.push({ code: error.code, message: error.message }) });
    globalThis.images = await fetchImages(normal);
  }, { weights: WEIGHTS, normal: NORMAL.slice(0, 4).map((n) => xrayUrl('NORMAL', n)) });
  // A call in flight when the worker dies of an uncaught error.
  await page.evaluate(() => {
    globalThis.inFlight = globalThis.graft.addExamples('NORMAL', globalThis.images).then(() => 'resolved', (error) => error.code);
  });
  const worker = page.workers().find((w) => w.url().endsWith('/pkg/worker.js'));
  assert.ok(worker, 'the engine runs in a worker');
  await worker.evaluate(() => setTimeout(() => {
    throw new Error('simulated crash');
  }, 0));
  const outcome = await page.evaluate(async () => ({
    inFlight: await globalThis.inFlight,
    laterCall: await globalThis.graft.predict(globalThis.images[0]).then(() => 'resolved', (error) => error.code),
    crashes: globalThis.crashes,
  }));
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(outcome.inFlight, 'ENGINE_CRASHED');
  assert.equal(outcome.laterCall, 'ENGINE_CRASHED');
  assert.equal(outcome.crashes.length, 1);
  assert.deepEqual(outcome.crashes[0].code, 'ENGINE_CRASHED');
  assert.match(outcome.crashes[0].message, /^the Graft worker failed: .*simulated crash/);
});

test('privacy: a whole session sends nothing anywhere', async () => {
  const log = [];
  const { page, context, errors } = await session.openHarness({
    onRequest: (request) => log.push({ url: request.url(), method: request.method(), bodyBytes: request.postDataBuffer()?.length ?? 0 }),
  });
  const served = session.server.requests.length;
  await page.evaluate(
    async ({ weights, normal, pneumonia }) => {
      const graft = await Graft.create({ weights, backend: 'cpu' });
      await graft.addExamples('NORMAL', await fetchImages(normal));
      await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
      await graft.train({ fineTuneBlocks: 1, epochs: 1, batchSize: 4 });
      await graft.predict((await fetchImages([normal[0]]))[0]);
      const model = await graft.exportModel();
      graft.dispose();
      (await Graft.load({ weights, model, backend: 'cpu' })).dispose();
    },
    {
      weights: WEIGHTS,
      normal: NORMAL.slice(0, 6).map((n) => xrayUrl('NORMAL', n)),
      pneumonia: PNEUMONIA.slice(0, 6).map((n) => xrayUrl('PNEUMONIA', n)),
    },
  );
  await context.close();
  assert.deepEqual(errors, []);
  // The page, its module worker, the wasm and the weights were all requested through the log.
  for (const part of ['/tests/browser/harness.html', '/pkg/worker.js', '/pkg/wasm/graft_engine_cpu_bg.wasm', WEIGHTS]) {
    assert.ok(log.some((r) => r.url.endsWith(part)), `${part} was requested and recorded`);
  }
  const origin = session.server.origin;
  const foreign = log.filter((r) => !r.url.startsWith(`${origin}/`) && !r.url.startsWith('blob:') && !r.url.startsWith('data:'));
  assert.deepEqual(foreign, [], 'requests to other hosts');
  assert.deepEqual(log.filter((r) => r.bodyBytes > 0 || r.method !== 'GET'), [], 'requests that send data');
  const serverSide = session.server.requests.slice(served).filter((r) => r.bodyBytes > 0 || r.method !== 'GET');
  assert.deepEqual(serverSide, []);
});
