// Object detection's speed at the default input size (320 px): images per second through
// `graft predict` natively and through `graft.detect` on the browser's CPU backend, on the same
// generated held-out images, interleaved (the machines are noisy); and what training costs:
// reading, epochs, and the engine's memory after adding, then training on, 1x and 2x the
// images (training's own memory is the difference). Writes bench/results/detection.json;
// `--only speed` or `--only training` measures one part and keeps the file's other.
//   node bench/detection.mjs [--images N] [--rounds N] [--only speed|training]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium, openHarness } from '../tests/browser/chromium.mjs';
import { repoRoot, startServer } from '../tests/browser/server.mjs';

const { values: args } = parseArgs({ options: { images: { type: 'string', default: '24' }, rounds: { type: 'string', default: '3' }, only: { type: 'string' } } });
if (![undefined, 'speed', 'training'].includes(args.only)) throw new Error(`--only speed or --only training, not ${args.only}`);
const measures = (part) => args.only === undefined || args.only === part;
const IMAGES = Number(args.images);
const ROUNDS = Number(args.rounds);
const GRAFT = join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
const WEIGHTS = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');
const SET = join(repoRoot, 'test-artifacts', 'bench-detection-set');
const NAMES = ['trouser', 'sneaker', 'bag'];

function run(argv) {
  const result = spawnSync(GRAFT, [...argv, '--weights', WEIGHTS], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (result.status !== 0) throw new Error(`graft ${argv[0]} failed: ${result.stderr.slice(-2000)}`);
  return result;
}

execFileSync('cargo', ['run', '--release', '--quiet', '--example', 'detection-set', '--', SET, '96', `${IMAGES}`, '3', 'png'], { cwd: repoRoot, stdio: 'inherit' });
const yaml = join(SET, 'data.yaml');
const model = join(SET, 'det.safetensors');
const trained = run(['train', '--task', 'detect', '--data', yaml, '--out', model, '--epochs', '5', '--json']);
const report = JSON.parse(trained.stdout);
const valFiles = readdirSync(join(SET, 'images', 'val')).sort();
const valPaths = valFiles.map((f) => join(SET, 'images', 'val', f));

function boxes(split, file) {
  const png = readFileSync(join(SET, 'images', split, file));
  const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
  return readFileSync(join(SET, 'labels', split, file.replace(/\.png$/, '.txt')), 'utf8').trim().split('\n').filter(Boolean).map((line) => {
    const [c, cx, cy, w, h] = line.split(' ').map(Number);
    return { label: NAMES[c], box: [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height] };
  });
}
const trainFiles = readdirSync(join(SET, 'images', 'train')).sort();
const trainItems = trainFiles.map((f) => ({ url: `/test-artifacts/bench-detection-set/images/train/${f}`, boxes: boxes('train', f) }));

const server = await startServer();
const browser = await launchChromium({ webgpu: false });
const native = [];
const inBrowser = [];
let training;
try {
  const { page } = await openHarness(browser, server.origin);
  await page.evaluate(async ({ weights, modelBytes }) => {
    window.detector = await Graft.load({ weights, model: new Uint8Array(modelBytes), backend: 'cpu', task: 'detect' });
  }, { weights: '/weights/efficientnet_lite0.safetensors', modelBytes: Array.from(readFileSync(model)) });
  const urls = valFiles.map((f) => `/test-artifacts/bench-detection-set/images/val/${f}`);
  for (let round = 0; measures('speed') && round < ROUNDS; round++) {
    // Natively: one image first pays the start-up; the rest is throughput.
    const one = performance.now();
    run(['predict', '--model', model, '--json', valPaths[0]]);
    const oneSeconds = (performance.now() - one) / 1000;
    const all = performance.now();
    run(['predict', '--model', model, '--json', ...valPaths]);
    const allSeconds = (performance.now() - all) / 1000;
    native.push((valPaths.length - 1) / (allSeconds - oneSeconds));
    inBrowser.push(await page.evaluate(async (urls) => {
      const images = await fetchImages(urls);
      await detector.detect(images[0]); // warm
      const started = performance.now();
      for (const image of images) await detector.detect(image);
      return images.length / ((performance.now() - started) / 1000);
    }, urls));
  }
  // Training in the browser on half and all of the training images: memory against data.
  training = [];
  for (const count of measures('training') ? [trainItems.length / 2, trainItems.length] : []) {
    const { page: fresh, context } = await openHarness(browser, server.origin);
    training.push(await fresh.evaluate(async ({ weights, items }) => {
      const graft = await Graft.create({ weights, backend: 'cpu', task: 'detect' });
      const images = await fetchImages(items.map((i) => i.url));
      let started = performance.now();
      await graft.addExamples(images.map((image, i) => ({ image, boxes: items[i].boxes })));
      const addSeconds = (performance.now() - started) / 1000;
      const afterAdding = (await graft.stats()).wasmMemoryBytes;
      started = performance.now();
      await graft.train({ epochs: 5 });
      const trainSeconds = (performance.now() - started) / 1000;
      const afterTraining = (await graft.stats()).wasmMemoryBytes;
      graft.dispose();
      return { images: items.length, addSeconds, trainSeconds, wasmMemoryAfterAddingMB: afterAdding / 1e6, wasmMemoryMB: afterTraining / 1e6, trainingGrewMB: (afterTraining - afterAdding) / 1e6 };
    }, { weights: '/weights/efficientnet_lite0.safetensors', items: trainItems.slice(0, count) }));
    await context.close();
  }
} finally {
  await browser.close();
  await server.close();
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const file = join(repoRoot, 'bench', 'results', 'detection.json');
const previous = args.only ? JSON.parse(readFileSync(file, 'utf8')) : {};
const date = new Date().toISOString();
const speed = {
  date,
  inputSize: report.plan.inputSize,
  valImages: valPaths.length,
  rounds: ROUNDS,
  imagesPerSecond: { cli: { runs: native, median: median(native) }, browserCpu: { runs: inBrowser, median: median(inBrowser) } },
};
const trainingPart = {
  trainingDate: date,
  cliTraining: { trainImages: 96, readingSeconds: report.readingSeconds, trainingSeconds: report.trainingSeconds, plan: report.plan, epochs: report.history },
  browserTraining: training,
};
const result = {
  ...previous,
  ...(measures('speed') ? speed : {}),
  ...(measures('training') ? trainingPart : {}),
};
mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
