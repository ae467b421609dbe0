// What an explanation costs: the time of `graft.explain` (predictions plus a heat map; 7x7, and
// 14x14 with `fine`) against `graft.predict` on the same X-rays, interleaved in one headless Chromium (the machines are
// noisy), on the CPU backend; and the same natively, `graft explain` against `graft predict`.
// Writes bench/results/explain-cost.json.
//   node bench/explain.mjs [--images N] [--rounds N]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium, openHarness } from '../tests/browser/chromium.mjs';
import { repoRoot, sharedRoot, startServer } from '../tests/browser/server.mjs';

const { values: args } = parseArgs({ options: { images: { type: 'string', default: '20' }, rounds: { type: 'string', default: '3' } } });
const IMAGES = Number(args.images);
const ROUNDS = Number(args.rounds);
const XRAYS = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');
const GRAFT = join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
const WEIGHTS = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');
const files = (label) => readdirSync(join(XRAYS, label)).sort();

function run(argv) {
  const result = spawnSync(GRAFT, [...argv, '--weights', WEIGHTS], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (result.status !== 0) throw new Error(`graft ${argv[0]} failed: ${result.stderr.slice(-2000)}`);
  return result.stdout;
}

// A model to explain with: the CLI's, on 25 X-rays per class.
const data = mkdtempSync(join(tmpdir(), 'graft-bench-explain-'));
for (const label of ['NORMAL', 'PNEUMONIA']) {
  mkdirSync(join(data, label));
  for (const name of files(label).slice(0, 25)) spawnSync('cp', [join(XRAYS, label, name), join(data, label, name)]);
}
const model = join(data, 'model.safetensors');
run(['train', '--data', data, '--out', model]);
const held = [...files('NORMAL').slice(-IMAGES / 2), ...files('PNEUMONIA').slice(-IMAGES / 2)].map((name, i) => [i < IMAGES / 2 ? 'NORMAL' : 'PNEUMONIA', name]);

// Natively: whole commands, so both pay the same start-up; interleaved.
const commands = { predict: ['predict'], explain: ['explain'], explainFine: ['explain', '--fine'] };
const native = { predict: [], explain: [], explainFine: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, command] of Object.entries(commands)) {
    const started = performance.now();
    run([...command, '--model', model, '--json', ...held.map(([label, file]) => join(XRAYS, label, file))]);
    native[name].push((performance.now() - started) / 1000);
  }
}

const server = await startServer();
const browser = await launchChromium({ webgpu: false });
let inBrowser;
try {
  const { page, errors } = await openHarness(browser, server.origin);
  inBrowser = await page.evaluate(
    async ({ weights, modelBytes, urls, rounds }) => {
      const images = await fetchImages(urls);
      const graft = await Graft.load({ weights, model: new Uint8Array(modelBytes), backend: 'cpu' });
      const ops = {
        predict: (image) => graft.predict(image),
        explain: (image) => graft.explain(image),
        explainFine: (image) => graft.explain(image, { fine: true }),
      };
      for (const op of Object.values(ops)) await op(images[0]); // warm-up: first calls compile and allocate
      const times = { predict: [], explain: [], explainFine: [] };
      for (let round = 0; round < rounds; round++) {
        for (const image of images) {
          const order = Object.keys(ops);
          for (const name of round % 2 ? order.reverse() : order) {
            const started = performance.now();
            await ops[name](image);
            times[name].push(performance.now() - started);
          }
        }
      }
      graft.dispose();
      return times;
    },
    { weights: '/weights/efficientnet_lite0.safetensors', modelBytes: Array.from((await import('node:fs')).readFileSync(model)), urls: held.map(([label, name]) => `/datasets/chest_xray_pneumonia/${label}/${name}`), rounds: ROUNDS },
  );
  if (errors.length) throw new Error(errors.join('\n'));
} finally {
  await browser.close();
  await server.close();
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const results = {
  date: new Date().toISOString(),
  images: IMAGES,
  rounds: ROUNDS,
  browserCpu: {
    predictMsMedian: median(inBrowser.predict),
    explainMsMedian: median(inBrowser.explain),
    fineExplainMsMedian: median(inBrowser.explainFine),
    ratio: median(inBrowser.explain) / median(inBrowser.predict),
    fineRatio: median(inBrowser.explainFine) / median(inBrowser.predict),
  },
  nativeCli: {
    predictSecondsMedian: median(native.predict),
    explainSecondsMedian: median(native.explain),
    fineExplainSecondsMedian: median(native.explainFine),
    ratio: median(native.explain) / median(native.predict),
    fineRatio: median(native.explainFine) / median(native.predict),
  },
};
mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
writeFileSync(join(repoRoot, 'bench', 'results', 'explain-cost.json'), `${JSON.stringify(results, null, 2)}\n`);
const { browserCpu: web, nativeCli: cli } = results;
console.log(`browser CPU backend, one image: predict ${web.predictMsMedian.toFixed(0)} ms, explain ${web.explainMsMedian.toFixed(0)} ms (x${web.ratio.toFixed(2)}), fine ${web.fineExplainMsMedian.toFixed(0)} ms (x${web.fineRatio.toFixed(2)})`);
console.log(`CLI, ${IMAGES} images: predict ${cli.predictSecondsMedian.toFixed(2)} s, explain ${cli.explainSecondsMedian.toFixed(2)} s (x${cli.ratio.toFixed(2)}), fine ${cli.fineExplainSecondsMedian.toFixed(2)} s (x${cli.fineRatio.toFixed(2)})`);
