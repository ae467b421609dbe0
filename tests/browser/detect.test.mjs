// Object detection through the JS API in headless Chromium, against the CLI on the same
// generated set (tests/common/detection_data.rs, written as PNG so both decode the same
// pixels): the browser trains the same detector on the CPU backend and on WebGPU; its mAP50 on
// held-out images is within 0.04 of `graft eval`'s on the CPU backend (96 images), 0.1 on
// WebGPU (see SETS: training amplifies the engines' rounding), and its last epoch's score
// within 0.05 of `graft train`'s (24 images); the model it exports is one the CLI reads and scores the same. Boxes: on a
// held-out image, the detector trained on the CPU backend finds the objects the CLI's finds
// (IoU > 0.9), and the CLI's model loaded in either engine finds exactly its boxes. A detector
// fine-tuned in the browser exports its blocks, and the CLI finds exactly its boxes.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { WEIGHTS, graft, modelHeader, temporaryFile, useBrowser } from './fixtures.mjs';
import { repoRoot } from './server.mjs';

// Each backend's set: on the CPU, 48 training images at 224 px and 10 epochs, the held-out
// images scored after every epoch; WebGPU on SwiftShader is slow (the backbone runs on every
// image at every step, about 4 s an image at 224 px), so there 16 images at 128 px and 10
// epochs. The 5-epoch accuracy on a full-size set is tests/detection.rs's business.
// `tolerance`: how far the browser's mAP50 may be from the CLI's. The engines run the same
// steps, but native and wasm (and SwiftShader's WebGPU) differ in the last bits of a sum, and
// training amplifies that: on the CPU backend the epochs' losses agree to the 6th decimal for
// the first 12 steps, then drift (the 4th decimal by the 30th step), and the two detectors'
// mAP50 on 24 held-out images came 0.013 to 0.029 apart. So on the CPU backend both are scored
// on `scored` held-out images of a set of their own (a score on more images moves less with
// each image's detections): on the sets of seeds 7, 8 and 9 they came 0.011, 0.006 and 0.033
// apart. That is rounding, not a different recipe: the CLI against itself, its learning rate
// changed by 1e-8 of itself (0.003 to 0.0030000001 or 0.0029999999), scored 0.561, 0.564 and
// 0.572 on the same 96 images. SwiftShader computes exp and log less exactly, and its detector
// on 16 images scored 0.33 where the CLI's scored 0.39. The CLI's own model in either engine
// scores and finds exactly what it does in the CLI.
const SETS = {
  cpu: { name: 'detection-set', train: 48, val: 24, scored: 96, epochs: 10, inputSize: 224, validate: true, tolerance: 0.04, epochTolerance: 0.05 },
  webgpu: { name: 'detection-set-small', train: 16, val: 8, epochs: 10, inputSize: 128, validate: false, tolerance: 0.1 },
};
// The boxes compared between detectors trained apart: for each true object, the CLI's best
// detection of it (its class, IoU >= 0.5), if it scores at least this. Backends differ in their
// last bits and training amplifies that (in the 5th decimal of the first epoch's loss, the 3rd
// by the tenth), so weak guesses and duplicates move; what a detector has found must not.
const CONFIDENT = 0.5;
const SEED = 7;

const session = useBrowser();
/** Per set: the CLI's model, its mAP50 and what it finds in the probe image. */
const cli = {};

/** A split's images, sorted as the CLI lists them, with their boxes in pixels. */
function split(set, name) {
  const root = join(repoRoot, 'test-artifacts', set.name);
  return readdirSync(join(root, 'images', name))
    .sort()
    .map((file) => {
      const png = readFileSync(join(root, 'images', name, file));
      const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
      const names = ['trouser', 'sneaker', 'bag'];
      const lines = readFileSync(join(root, 'labels', name, file.replace(/\.png$/, '.txt')), 'utf8').trim().split('\n');
      const boxes = lines.filter(Boolean).map((line) => {
        const [c, cx, cy, w, h] = line.split(' ').map(Number);
        return { label: names[c], box: [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height] };
      });
      return { path: join(root, 'images', name, file), url: `/test-artifacts/${set.name}/images/${name}/${file}`, boxes };
    });
}

const iou = (a, b) => {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (r) => (r[2] - r[0]) * (r[3] - r[1]);
  return (w * h) / (area(a) + area(b) - w * h);
};

/** For each true box, the best detection of its class overlapping it by 0.5, if it scores at least CONFIDENT. */
function confidentHits(found, truth) {
  const hits = truth
    .map((t) => found.filter((d) => d.label === t.label && iou(t.box, d.box) >= 0.5).sort((a, b) => b.score - a.score)[0])
    .filter((d) => d && d.score >= CONFIDENT);
  return [...new Set(hits)];
}

/** Writes a generated set under test-artifacts/; returns its data.yaml. */
function generate(name, train, val, seed) {
  const root = join(repoRoot, 'test-artifacts', name);
  execFileSync('cargo', ['run', '--release', '--quiet', '--example', 'detection-set', '--', root, `${train}`, `${val}`, `${seed}`, 'png'], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return join(root, 'data.yaml');
}

/** The set whose val split the detectors are scored on: its own, or one of `scored` images. */
const scoredSet = (set) => (set.scored ? { name: `${set.name}-scored` } : set);

before(() => {
  for (const [backend, set] of Object.entries(SETS)) {
    const yaml = generate(set.name, set.train, set.val, SEED);
    // Its one training image is not used; its val images are drawn from the same held-out
    // items as the training set's, with other textures and places.
    const scoredYaml = set.scored ? generate(scoredSet(set).name, 1, set.scored, SEED + 1) : yaml;
    const model = temporaryFile('det.safetensors', []);
    const trained = JSON.parse(graft(['train', '--task', 'detect', '--data', yaml, '--epochs', `${set.epochs}`, '--input-size', `${set.inputSize}`, '--out', model, '--json']));
    // The probe: the held-out image where the CLI's detector is right most confidently.
    const val = split(set, 'val');
    const predicted = JSON.parse(graft(['predict', '--model', model, '--json', ...val.map((v) => v.path)]));
    const scored = val.map((image, i) => ({ image, found: predicted[i].detections, hits: confidentHits(predicted[i].detections, image.boxes) }));
    const best = scored.reduce((a, b) => (b.hits.length > a.hits.length ? b : a));
    cli[backend] = {
      history: trained.history,
      model: Array.from(readFileSync(model)),
      scoredYaml,
      map50: JSON.parse(graft(['eval', '--model', model, '--data', scoredYaml, '--json'])).mAP50,
      probe: best.image,
      found: best.found,
      hits: best.hits,
    };
  }
});

async function trainInBrowser(backend) {
  const set = SETS[backend];
  const { page, context, errors } = await session.openHarness();
  const result = await page.evaluate(
    async ({ backend, train, val, scored, probe, weights, inputSize, epochs, validate, cliModel }) => {
      const seconds = {};
      const timed = async (name, work) => {
        const started = performance.now();
        const result = await work();
        seconds[name] = (performance.now() - started) / 1000;
        return result;
      };
      const graft = await Graft.create({ weights, backend, task: 'detect', inputSize });
      const trainFiles = await fetchImages(train.map((t) => t.url));
      const added = await timed('add', () => graft.addExamples(trainFiles.map((image, i) => ({ image, boxes: train[i].boxes }))));
      const valFiles = await fetchImages(val.map((v) => v.url));
      if (validate) await graft.addExamples(valFiles.map((image, i) => ({ image, boxes: val[i].boxes, id: `val-${i}` })), { validation: true });
      const steps = [];
      const report = await timed('train', () => graft.train({ epochs, onProgress: (event) => steps.push(event.type) }));
      const scoredFiles = await fetchImages(scored.map((v) => v.url));
      const evaluation = await timed('evaluate', () => graft.evaluate(scoredFiles.map((image, i) => ({ image, boxes: scored[i].boxes }))));
      const [probeFile] = await fetchImages([probe.url]);
      const found = await graft.detect(probeFile, { minScore: 0.25 });
      const model = await graft.exportModel();
      const actualBackend = graft.backend;
      graft.dispose();
      // The CLI's own model, in this engine.
      // Loaded without saying its input size, it takes examples at the file's.
      const loaded = await Graft.load({ weights, backend, task: 'detect', model: new Uint8Array(cliModel) });
      const cliModelFound = await loaded.detect(probeFile, { minScore: 0.25 });
      const addedToLoaded = await loaded.addExamples(valFiles[0], val[0].boxes).then((r) => r.ids.length, (e) => e.message);
      loaded.dispose();
      return { added, report, steps, evaluation, found, cliModelFound, addedToLoaded, model: Array.from(model), backend: actualBackend, seconds };
    },
    { backend, train: split(set, 'train'), val: split(set, 'val'), scored: split(scoredSet(set), 'val'), probe: cli[backend].probe, weights: WEIGHTS, inputSize: set.inputSize, epochs: set.epochs, validate: set.validate, cliModel: cli[backend].model },
  );
  await context.close();
  assert.deepEqual(errors, [], 'no page errors');
  return result;
}

/** Every box in `expected` is in `found` with the same label, overlapping it by more than 0.9. */
function assertSameBoxes(expected, found, what) {
  assert.ok(expected.length > 0, `${what}: there are boxes to compare`);
  for (const box of expected) {
    const best = Math.max(0, ...found.filter((d) => d.label === box.label).map((d) => iou(d.box, box.box)));
    assert.ok(best > 0.9, `${what}: ${box.label} at ${box.box}: best IoU ${best} (${JSON.stringify(found)})`);
  }
}

/** What every backend must show against the CLI. */
function checkAgainstCli(result, backend) {
  const [set, reference] = [SETS[backend], cli[backend]];
  assert.equal(result.backend, backend);
  assert.equal(result.added.ids.length, set.train);
  assert.equal(result.report.history.length, set.epochs);
  assert.ok(result.steps.includes('step') && result.steps.includes('epoch'), 'progress events');
  const map50 = result.evaluation.mAP50;
  console.log(`${backend}: browser mAP50 ${map50.toFixed(4)}, CLI ${reference.map50.toFixed(4)}; seconds ${JSON.stringify(result.seconds)}`);
  console.log(`${backend}: loss per epoch, browser ${result.report.history.map((e) => e.loss.toFixed(6))}, CLI ${reference.history.map((e) => e.loss.toFixed(6))}; the CLI's confident hits on the probe: ${JSON.stringify(reference.hits)}`);
  // Far from 0, so that "within 0.02" could fail.
  assert.ok(reference.map50 > 0.2, `the CLI's detector finds objects (mAP50 ${reference.map50})`);
  assert.ok(Math.abs(map50 - reference.map50) <= set.tolerance, `mAP50 ${map50} in the browser against ${reference.map50} in the CLI`);
  // Held-out images added with `validation: true` are scored after every epoch, as the CLI
  // scores its val split; without them there is no score.
  const last = (history) => history[history.length - 1].valMAP50;
  if (set.validate) {
    assert.ok(result.report.history.every((epoch) => epoch.valMAP50 >= 0), JSON.stringify(result.report.history));
    assert.ok(Math.abs(last(result.report.history) - last(reference.history)) <= set.epochTolerance, `last epoch's valMAP50: ${last(result.report.history)} in the browser, ${last(reference.history)} in the CLI`);
  } else {
    assert.equal(last(result.report.history), null);
  }
  // The same model finds the same boxes, weak ones included.
  assertSameBoxes(reference.found, result.cliModelFound, `the CLI's model on ${backend}`);
  assert.equal(result.addedToLoaded, 1, 'a loaded detector takes examples at its own input size');
  // The exported model is the CLI's kind of file, and scores the same there.
  const exported = temporaryFile('browser-det.safetensors', result.model);
  const inCli = JSON.parse(graft(['eval', '--model', exported, '--data', reference.scoredYaml, '--json'])).mAP50;
  assert.ok(Math.abs(inCli - map50) <= 0.02, `the exported model: ${inCli} in the CLI, ${map50} in the browser`);
}

test('the CPU backend trains the detector the CLI trains', async () => {
  const result = await trainInBrowser('cpu');
  checkAgainstCli(result, 'cpu');
  assertSameBoxes(cli.cpu.hits, result.found, 'the detector trained on the CPU backend');
});

test('WebGPU trains the detector the CLI trains', async () => {
  checkAgainstCli(await trainInBrowser('webgpu'), 'webgpu');
});

// With `fineTuneBlocks`, the backbone's last blocks train with the head in the browser too: the
// exported file holds them, and the CLI, running the file, finds exactly the browser's boxes
// (blocks it ignored, or a browser that ignored them, would move every score). At the head's
// own rate, so that the blocks move far in a short test (the same head on the pretrained
// blocks scored the probe 0.40 where the tuned ones scored 0.30).
test('a detector fine-tuned in the browser keeps its blocks: the CLI finds its boxes', async () => {
  const set = SETS.webgpu;
  const [train, probe] = [split(set, 'train'), split(set, 'val')[0]];
  const { page, context, errors } = await session.openHarness();
  const result = await page.evaluate(
    async ({ weights, inputSize, train, probe }) => {
      const graft = await Graft.create({ weights, backend: 'cpu', task: 'detect', inputSize });
      const images = await fetchImages(train.map((t) => t.url));
      await graft.addExamples(images.map((image, i) => ({ image, boxes: train[i].boxes })));
      const report = await graft.train({ epochs: 2, fineTuneBlocks: 2, backboneLrFactor: 1 });
      const [probeImage] = await fetchImages([probe.url]);
      const found = await graft.detect(probeImage, { minScore: 0.05 });
      const model = await graft.exportModel();
      graft.dispose();
      return { plan: report.plan, found, model: Array.from(model) };
    },
    { weights: WEIGHTS, inputSize: set.inputSize, train, probe },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(result.plan.fineTuneBlocks, 2);
  const { info, tensors } = modelHeader(result.model);
  assert.deepEqual(info.fineTuned, { blocks: 2, firstBlock: 14, tensorPrefix: 'backbone.' });
  assert.ok(tensors.some((name) => name.startsWith('backbone.blocks.1.')), 'the last tuned block is in the file');
  const model = temporaryFile('tuned-det.safetensors', result.model);
  const [inCli] = JSON.parse(graft(['predict', '--model', model, '--min-score', '0.05', '--json', probe.path]));
  assert.ok(result.found.length > 0, 'the browser finds something to compare');
  assert.equal(inCli.detections.length, result.found.length, JSON.stringify({ cli: inCli.detections, browser: result.found }));
  assertSameBoxes(result.found, inCli.detections, 'the browser-tuned detector in the CLI');
  for (const [i, d] of inCli.detections.entries()) assert.ok(Math.abs(d.score - result.found[i].score) < 1e-3, `score ${d.score} in the CLI, ${result.found[i].score} in the browser`);
});

test('a box outside its image is refused by name and loses nothing; examples can be removed', async () => {
  const { page, context, errors } = await session.openHarness();
  const result = await page.evaluate(
    async ({ weights, first }) => {
      const graft = await Graft.create({ weights, backend: 'cpu', task: 'detect', inputSize: 128 });
      const [image] = await fetchImages([first.url]);
      await graft.addExamples(image, first.boxes, { id: 'kept' });
      const before = graft.classes();
      const outcome = await graft
        .addExamples([
          { image, boxes: first.boxes, id: 'good' },
          { image, boxes: [{ label: 'bag', box: [-50, 0, 20, 20] }], id: 'bad' },
        ])
        .then(() => null, (error) => ({ code: error.code, message: error.message }));
      const training = await graft.train({ epochs: 1 }).then(() => 'trained', (error) => error.code);
      // Had the refused call added 'good', adding it again would be ALREADY_EXISTS.
      const again = await graft.addExamples(image, first.boxes, { id: 'good' }).then((r) => r.classes, (error) => error.code);
      // Removing one takes its boxes out; removing the other leaves nothing to train on.
      await graft.removeExamples(['kept']);
      const afterRemoving = graft.classes();
      await graft.removeExamples(['good']);
      const trainingNothing = await graft.train({ epochs: 1 }).then(() => 'trained', (error) => error.message);
      graft.dispose();
      return { before, outcome, again, training, afterRemoving, trainingNothing };
    },
    { weights: WEIGHTS, first: split(SETS.cpu, 'train')[0] },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(result.outcome?.code, 'INVALID_OPTION', JSON.stringify(result.outcome));
  assert.match(result.outcome.message, /bad, box 1: the box reaches outside the image/);
  assert.equal(result.training, 'trained', 'the examples already added still train');
  const boxes = (classes) => classes.reduce((sum, c) => sum + c.count, 0);
  assert.ok(Array.isArray(result.again), `'good' was not added by the refused call: ${result.again}`);
  assert.equal(boxes(result.again), 2 * boxes(result.before), 'the first image kept, the second added now');
  assert.equal(boxes(result.afterRemoving), boxes(result.before), 'removing an example removes its boxes');
  assert.match(result.trainingNothing, /add images with boxes before training/);
});
