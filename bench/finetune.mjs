// Fine-tuning benchmark, side by side in one run: the CLI (head only, then K = 2) and the
// browser engine through the JS API (CPU and/or WebGPU backends) on the chest X-rays with the
// same fixed 80/20 stratified split (seed 42). Writes bench/results/finetune.json and prints a
// table. Slow on purpose: it is a measurement, not a test.
//   node bench/finetune.mjs [--backends cpu,webgpu] [--per-class N] [--epochs N]
//                           [--augment [--augment-variants N]] [--batch-size N] [--skip-cli]
//                           [--tag NAME]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium, openHarness } from '../tests/browser/chromium.mjs';
import { repoRoot, sharedRoot, startServer } from '../tests/browser/server.mjs';

const { values: args } = parseArgs({
  options: {
    backends: { type: 'string', default: 'cpu' },
    'per-class': { type: 'string', default: '300' },
    epochs: { type: 'string' },
    augment: { type: 'boolean', default: false },
    'augment-variants': { type: 'string' },
    'batch-size': { type: 'string' },
    tag: { type: 'string', default: '' },
    'skip-cli': { type: 'boolean', default: false },
  },
});
const PER_CLASS = Number(args['per-class']);
const XRAYS = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');
const GRAFT = join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
const WEIGHTS = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');
const SPLIT = { validationSplit: 0.2, seed: 42 };
const names = (label) => readdirSync(join(XRAYS, label)).sort().slice(0, PER_CLASS);
const results = { date: new Date().toISOString(), imagesPerClass: PER_CLASS, split: SPLIT, cli: {}, browser: {} };

/** The data folder the CLI reads: the whole dataset, or the first N images per class. */
function dataFolder() {
  if (PER_CLASS >= 300) return XRAYS;
  const dir = mkdtempSync(join(tmpdir(), 'graft-bench-'));
  for (const label of ['NORMAL', 'PNEUMONIA']) {
    mkdirSync(join(dir, label));
    for (const name of names(label)) execFileSync('cp', [join(XRAYS, label, name), join(dir, label, name)]);
  }
  return dir;
}

function cli(extra) {
  const out = join(mkdtempSync(join(tmpdir(), 'graft-bench-')), 'model.safetensors');
  const argv = ['-v', GRAFT, 'train', '--weights', WEIGHTS, '--data', dataFolder(), '--validation-split', '0.2', '--seed', '42', '--json', '--out', out, ...extra];
  const started = performance.now();
  const run = spawnSync('/usr/bin/time', argv, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (run.status !== 0) throw new Error(`graft train failed: ${run.stderr.slice(-2000)}`);
  const report = JSON.parse(run.stdout);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr)?.[1] ?? 0);
  return { seconds: (performance.now() - started) / 1000, peakRssMB: rss / 1024, report };
}

/** Sum of the resident memory of every Chromium process, sampled until stopped. */
function sampleChromiumMemory() {
  let peak = 0;
  const timer = setInterval(() => {
    const ps = spawnSync('ps', ['-C', 'chromium', '-o', 'rss='], { encoding: 'utf8' });
    const total = ps.stdout.split('\n').filter(Boolean).reduce((sum, kb) => sum + Number(kb), 0);
    peak = Math.max(peak, total);
  }, 500);
  return () => (clearInterval(timer), peak / 1024);
}

async function browserRun(backend) {
  const server = await startServer();
  const browser = await launchChromium();
  const stopSampling = sampleChromiumMemory();
  try {
    const { page, errors } = await openHarness(browser, server.origin);
    page.on('console', (message) => console.log(`  [${backend}] ${message.text()}`));
    const options = { ...SPLIT, fineTuneBlocks: 2 };
    if (args.epochs) options.epochs = Number(args.epochs);
    if (args.augment) options.augment = { flip: true, crop: true, rotate: true, brightness: true, contrast: true };
    if (args['augment-variants']) options.augmentVariants = Number(args['augment-variants']);
    if (args['batch-size']) options.batchSize = Number(args['batch-size']);
    page.setDefaultTimeout(0);
    const result = await page.evaluate(
      async ({ backend, normal, pneumonia, options }) => {
        const graft = await Graft.create({ weights: '/weights/efficientnet_lite0.safetensors', backend });
        let t = performance.now();
        await graft.addExamples('NORMAL', await fetchImages(normal));
        await graft.addExamples('PNEUMONIA', await fetchImages(pneumonia));
        const embedSeconds = (performance.now() - t) / 1000;
        const epochs = [];
        t = performance.now();
        console.log(`embedded ${normal.length + pneumonia.length} images in ${embedSeconds.toFixed(1)} s`);
        const onProgress = (e) => {
          if (e.status !== 'epoch' && e.status !== 'baseline') return;
          epochs.push({ ...e, at: (performance.now() - t) / 1000 });
          console.log(`fine-tuning epoch ${e.epoch}: val acc ${e.valAccuracy}, val loss ${e.valLoss} at ${((performance.now() - t) / 1000).toFixed(1)} s`);
        };
        const run = await countFrames(() => graft.train({ ...options, onProgress }));
        const stats = await graft.stats();
        graft.dispose();
        return { embedSeconds, trainSeconds: run.seconds, frames: run.frames, epochs, report: run.result, stats };
      },
      {
        backend,
        normal: names('NORMAL').map((n) => `/datasets/chest_xray_pneumonia/NORMAL/${n}`),
        pneumonia: names('PNEUMONIA').map((n) => `/datasets/chest_xray_pneumonia/PNEUMONIA/${n}`),
        options,
      },
    );
    if (errors.length) throw new Error(errors.join('\n'));
    const tune = result.report.fineTune;
    return {
      embedSeconds: +result.embedSeconds.toFixed(1),
      trainSeconds: +result.trainSeconds.toFixed(1),
      headOnlyValAccuracy: result.report.head.valAccuracy,
      finalValAccuracy: result.report.validation.accuracy,
      fineTuneBestEpoch: tune.bestEpoch,
      fineTuneHistory: tune.history.map((e) => ({ epoch: e.epoch, valAccuracy: e.valAccuracy, valLoss: e.valLoss })),
      secondsPerFineTuneEpoch: tune.secondsPerEpoch.map((s) => +s.toFixed(1)),
      framesPerSecondDuringTraining: +(result.frames / result.trainSeconds).toFixed(1),
      wasmMemoryMB: +(result.stats.wasmMemoryBytes / 1048576).toFixed(1),
      prefixCacheMB: +tune.cacheMegabytes.toFixed(1),
      notes: tune.notes,
    };
  } finally {
    results.browser[`${backend}PeakChromiumRssMB`] = +stopSampling().toFixed(0);
    await browser.close();
    await server.close();
  }
}

if (!args['skip-cli']) {
  const head = cli([]);
  results.cli.headOnly = { seconds: +head.seconds.toFixed(1), peakRssMB: +head.peakRssMB.toFixed(0), report: head.report };
  const extra = ['--fine-tune-blocks', '2'];
  if (args.epochs) extra.push('--epochs', args.epochs);
  if (args.augment) extra.push('--augment');
  if (args['augment-variants']) extra.push('--augment-variants', args['augment-variants']);
  if (args['batch-size']) extra.push('--batch-size', args['batch-size']);
  const tuned = cli(extra);
  results.cli.fineTuned = { seconds: +tuned.seconds.toFixed(1), peakRssMB: +tuned.peakRssMB.toFixed(0), report: tuned.report };
  console.log('cli', JSON.stringify({ headOnly: results.cli.headOnly.seconds, fineTuned: results.cli.fineTuned.seconds }));
}
for (const backend of args.backends.split(',').filter(Boolean)) {
  results.browser[backend] = await browserRun(backend);
  console.log(backend, JSON.stringify(results.browser[backend]));
}
mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
const file = join(repoRoot, 'bench', 'results', `finetune-${args.backends.replace(/,/g, '-')}${args.tag ? `-${args.tag}` : ''}.json`);
writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
console.log(`written: ${file}`);
