// Object detection through the JS API in headless Chromium, against the CLI on the same
// generated set (tests/common/detection_data.rs, written as PNG so both decode the same
// pixels): the browser trains the same detector on the CPU backend and on WebGPU, its mAP50 on
// the held-out images is within 0.02 of `graft eval`'s, and the model it exports is one the CLI
// reads and scores the same. Boxes: the CLI's model loaded in the browser finds the CLI's boxes
// (IoU > 0.9) on both backends; the detector trained on the CPU backend does too. (Trained on
// WebGPU, SwiftShader's float rounding takes 30 Adam steps of a small detector elsewhere: its
// weak detections, score 0.25 to 0.5, move, though its mAP stays within 0.02.)
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { WEIGHTS, graft, temporaryFile, useBrowser } from './fixtures.mjs';
import { repoRoot } from './server.mjs';

const INPUT_SIZE = 224;
// Each backend's set: on the CPU, 48 training images and 5 epochs; WebGPU on SwiftShader takes
// about 2 s an image and 5 s a step, so there 16 images and 10 epochs. The 5-epoch accuracy on
// a full-size set is tests/detection.rs's business.
const SETS = {
  cpu: { name: 'detection-set', train: 48, val: 24, epochs: 5 },
  webgpu: { name: 'detection-set-small', train: 16, val: 8, epochs: 10 },
};
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

before(() => {
  for (const [backend, set] of Object.entries(SETS)) {
    const root = join(repoRoot, 'test-artifacts', set.name);
    execFileSync('cargo', ['run', '--release', '--quiet', '--example', 'detection-set', '--', root, `${set.train}`, `${set.val}`, `${SEED}`, 'png'], {
      cwd: repoRoot,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const yaml = join(root, 'data.yaml');
    const model = temporaryFile('det.safetensors', []);
    graft(['train', '--task', 'detect', '--data', yaml, '--epochs', `${set.epochs}`, '--input-size', `${INPUT_SIZE}`, '--out', model]);
    const probe = split(set, 'val')[0];
    cli[backend] = {
      yaml,
      model: Array.from(readFileSync(model)),
      map50: JSON.parse(graft(['eval', '--model', model, '--data', yaml, '--json'])).mAP50,
      found: JSON.parse(graft(['predict', '--model', model, '--json', probe.path]))[0].detections,
    };
  }
});

async function trainInBrowser(backend) {
  const set = SETS[backend];
  const { page, context, errors } = await session.openHarness();
  const result = await page.evaluate(
    async ({ backend, train, val, weights, inputSize, epochs, cliModel }) => {
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
      const steps = [];
      const report = await timed('train', () => graft.train({ epochs, onProgress: (event) => steps.push(event.type) }));
      const valFiles = await fetchImages(val.map((v) => v.url));
      const evaluation = await timed('evaluate', () => graft.evaluate(valFiles.map((image, i) => ({ image, boxes: val[i].boxes }))));
      const found = await graft.detect(valFiles[0], { minScore: 0.25 });
      const model = await graft.exportModel();
      const actualBackend = graft.backend;
      graft.dispose();
      // The CLI's own model, in this engine.
      // Loaded without saying its input size, it takes examples at the file's.
      const loaded = await Graft.load({ weights, backend, task: 'detect', model: new Uint8Array(cliModel) });
      const cliModelFound = await loaded.detect(valFiles[0], { minScore: 0.25 });
      const addedToLoaded = await loaded.addExamples(valFiles[0], val[0].boxes).then((r) => r.ids.length, (e) => e.message);
      loaded.dispose();
      return { added, report, steps, evaluation, found, cliModelFound, addedToLoaded, model: Array.from(model), backend: actualBackend, seconds };
    },
    { backend, train: split(set, 'train'), val: split(set, 'val'), weights: WEIGHTS, inputSize: INPUT_SIZE, epochs: set.epochs, cliModel: cli[backend].model },
  );
  await context.close();
  assert.deepEqual(errors, [], 'no page errors');
  return result;
}

/** Every box the CLI found is found in `found` with the same label, overlapping it by more than 0.9. */
function assertSameBoxes(reference, found, what) {
  assert.ok(reference.found.length > 0, 'the CLI finds objects in the probe image');
  for (const expected of reference.found) {
    const best = Math.max(0, ...found.filter((d) => d.label === expected.label).map((d) => iou(d.box, expected.box)));
    assert.ok(best > 0.9, `${what}: ${expected.label} at ${expected.box}: best IoU ${best} (${JSON.stringify(found)})`);
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
  // Far from 0, so that "within 0.02" could fail.
  assert.ok(reference.map50 > 0.2, `the CLI's detector finds objects (mAP50 ${reference.map50})`);
  assert.ok(Math.abs(map50 - reference.map50) <= 0.02, `mAP50 ${map50} in the browser against ${reference.map50} in the CLI`);
  assertSameBoxes(reference, result.cliModelFound, `the CLI's model on ${backend}`);
  assert.equal(result.addedToLoaded, 1, 'a loaded detector takes examples at its own input size');
  // The exported model is the CLI's kind of file, and scores the same there.
  const exported = temporaryFile('browser-det.safetensors', result.model);
  const inCli = JSON.parse(graft(['eval', '--model', exported, '--data', reference.yaml, '--json'])).mAP50;
  assert.ok(Math.abs(inCli - map50) <= 0.02, `the exported model: ${inCli} in the CLI, ${map50} in the browser`);
}

test('the CPU backend trains the detector the CLI trains', async () => {
  const result = await trainInBrowser('cpu');
  checkAgainstCli(result, 'cpu');
  assertSameBoxes(cli.cpu, result.found, 'the detector trained on the CPU backend');
});

test('WebGPU trains the detector the CLI trains', async () => {
  checkAgainstCli(await trainInBrowser('webgpu'), 'webgpu');
});

test('a box outside its image is refused by name and loses nothing', async () => {
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
      graft.dispose();
      return { before, outcome, again, training };
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
});
