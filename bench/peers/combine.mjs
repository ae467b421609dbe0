// Combines the peer benchmark's runs into bench/results/peers.json, peers.md and peers.svg:
// build/browser.json (browser.mjs) and the interleaved native runs build/graft-native-N.json
// (the peers-native example) and build/ort-native-N.json (native.py), taking medians.
//   node bench/peers/combine.mjs
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../tests/browser/server.mjs';

const BUILD = join(repoRoot, 'bench', 'peers', 'build');
const RESULTS = join(repoRoot, 'bench', 'results');
const MB = 1e6;

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const packageVersion = (name) => readJson(join(repoRoot, 'bench', 'peers', 'node_modules', name, 'package.json')).version;

function graftVersion() {
  const git = (...args) => execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).trim();
  return `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? ' (dirty)' : ''}`;
}

/** Medians over the interleaved runs of one engine's native files, per thread count. */
function nativeMedians(prefix) {
  const files = readdirSync(BUILD).filter((name) => name.startsWith(`${prefix}-`) && name.endsWith('.json')).sort();
  if (!files.length) throw new Error(`no ${prefix}-N.json in ${BUILD}: run bench/peers/run.sh`);
  const reports = files.map((name) => readJson(join(BUILD, name)));
  const byThreads = {};
  for (const report of reports) {
    for (const run of report.runs) (byThreads[run.threads] ??= []).push(run);
  }
  const medians = Object.fromEntries(
    Object.entries(byThreads).map(([threads, runs]) => [
      threads,
      {
        imagesPerSecond: median(runs.map((r) => r.images / r.wallSeconds)),
        imagesPerCpuSecond: median(runs.map((r) => r.images / r.cpuSeconds)),
        runs: runs.map(({ images, wallSeconds, cpuSeconds }) => ({ images, wallSeconds, cpuSeconds })),
      },
    ]),
  );
  const cosines = reports.flatMap((report) => report.runs.map((run) => run.lowestCosineVsGraft)).filter((c) => c !== undefined);
  return { medians, lowestCosine: cosines.length ? Math.min(...cosines) : null, reports };
}

const browser = readJson(join(BUILD, 'browser.json'));
const graftNative = nativeMedians('graft-native');
const ortNative = nativeMedians('ort-native');
const { throughput, firstEmbedding: first } = browser;
const speed = (key) => throughput.engines[key].imagesPerSecond;
const browserEngine = (key, extra = {}) => ({
  imagesPerSecond: speed(key),
  secondsPerRound: throughput.engines[key].seconds,
  firstEmbeddingSeconds: first[key].medianSeconds,
  firstEmbeddingRuns: first[key].seconds,
  gzipBytes: first[key].gzipBytes,
  rawBytes: first[key].rawBytes,
  files: first[key].files,
  ...extra,
});

const threads = Object.keys(graftNative.medians).filter((t) => t in ortNative.medians).map(Number).sort((a, b) => a - b);
const native = Object.fromEntries(
  threads.map((t) => {
    const graft = graftNative.medians[t];
    const ort = ortNative.medians[t];
    return [
      `threads${t}`,
      {
        threads: t,
        graft,
        onnxruntime: ort,
        ratioPerCpuSecond: graft.imagesPerCpuSecond / ort.imagesPerCpuSecond,
        ratioPerSecond: graft.imagesPerSecond / ort.imagesPerSecond,
      },
    ];
  }),
);

const acceptance = [
  ['browser: Graft (1 worker) / ONNX Runtime Web, images/s', speed('graft') / speed('ort'), '>=', 1.0],
  ['browser: Graft (1 worker) / TF.js wasm, images/s', speed('graft') / speed('tfjs'), '>=', 0.8],
  ['browser: Graft 2 workers / 1 worker, images/s', speed('graft2') / speed('graft'), '>=', 1.6],
  ...threads.map((t) => [`native, ${t} thread${t > 1 ? 's' : ''}: Graft / onnxruntime, images per CPU-second`, native[`threads${t}`].ratioPerCpuSecond, '>=', 0.7]),
  ['time to first embedding: Graft / TF.js', first.graft.medianSeconds / first.tfjs.medianSeconds, '<=', 1.0],
  ['Graft wasm, gzip -9, MB', first.graft.gzipBytes.wasm / MB, '<=', 3.7],
  ['Graft weights, raw, MB', first.graft.rawBytes.weights / MB, '<=', 10],
].map(([check, value, op, target]) => ({ check, value, target: `${op} ${target}`, pass: op === '>=' ? value >= target : value <= target }));

const results = {
  date: browser.date,
  graft: graftVersion(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), chromium: browser.chromium },
  peers: {
    onnxruntimeWeb: packageVersion('onnxruntime-web'),
    tfjsCore: packageVersion('@tensorflow/tfjs-core'),
    tfjsBackendWasm: packageVersion('@tensorflow/tfjs-backend-wasm'),
    onnxruntime: ortNative.reports[0].onnxruntime,
  },
  browser: {
    images: throughput.images,
    batch: throughput.batch,
    rounds: throughput.rounds,
    engines: {
      graft: browserEngine('graft', throughput.info.graft),
      ort: browserEngine('ort', { ...throughput.info.ort, ratioGraftToPeer: speed('graft') / speed('ort'), lowestCosineVsGraft: throughput.lowestCosineVsGraft.ort }),
      tfjs: browserEngine('tfjs', { ...throughput.info.tfjs, ratioGraftToPeer: speed('graft') / speed('tfjs'), lowestCosineVsGraft: throughput.lowestCosineVsGraft.tfjs }),
      graft2: {
        ...throughput.info.graft2,
        imagesPerSecond: speed('graft2'),
        secondsPerRound: throughput.engines.graft2.seconds,
        ratioToOneWorker: speed('graft2') / speed('graft'),
        lowestCosineVsGraft: throughput.lowestCosineVsGraft.graft2,
      },
    },
  },
  native: { images: graftNative.reports[0].runs[0].images, runsEach: graftNative.reports.length, ...native, lowestCosineVsGraft: ortNative.lowestCosine },
  acceptance,
};

const fixed = (value, digits = 1) => value.toFixed(digits);
const megabytes = (bytes) => `${fixed(bytes / MB, 2)} MB`;
const { engines } = results.browser;
const markdown = `Graft against its peers on the same network (EfficientNet-Lite0 to the 1280 pooled features), the
same weights (Graft's half-precision file, BatchNorm folded, float32) and the same pixels; graft
${results.graft}, ${results.date}; ${results.machine.cores} cores (${results.machine.cpu}), Chromium ${results.machine.chromium} headless.
Browser: ${results.browser.images} X-rays in batches of ${results.browser.batch}, ${results.browser.rounds} interleaved rounds after a warm-up batch, medians;
first embedding: the median of ${first.graft.seconds.length} fresh contexts each, engines interleaved.
Native: ${results.native.runsEach} interleaved runs of each, ${results.native.images} images per run, medians.

| engine | browser, 1 thread: images/s | Graft / it | lowest cosine vs Graft | first embedding | wasm, gzip | weights (raw) |
|---|---:|---:|---:|---:|---:|---:|
| Graft, CPU backend, 1 worker | ${fixed(speed('graft'))} | | | ${fixed(engines.graft.firstEmbeddingSeconds, 2)} s | ${megabytes(engines.graft.gzipBytes.wasm)} | ${megabytes(engines.graft.rawBytes.weights)} |
| Graft, CPU backend, 2 workers | ${fixed(speed('graft2'))} (x${fixed(engines.graft2.ratioToOneWorker, 2)} of 1 worker) | | ${fixed(engines.graft2.lowestCosineVsGraft, 7)} | | | |
| ONNX Runtime Web ${results.peers.onnxruntimeWeb}, wasm, 1 thread | ${fixed(speed('ort'))} | x${fixed(engines.ort.ratioGraftToPeer, 2)} | ${fixed(engines.ort.lowestCosineVsGraft, 7)} | ${fixed(engines.ort.firstEmbeddingSeconds, 2)} s | ${megabytes(engines.ort.gzipBytes.wasm)} | ${megabytes(engines.ort.rawBytes.weights)} |
| TF.js ${results.peers.tfjsCore}, wasm backend (${engines.tfjs.simd ? 'SIMD' : 'no SIMD'}, ${engines.tfjs.multithread ? 'threads' : '1 thread'}) | ${fixed(speed('tfjs'))} | x${fixed(engines.tfjs.ratioGraftToPeer, 2)} | ${fixed(engines.tfjs.lowestCosineVsGraft, 7)} | ${fixed(engines.tfjs.firstEmbeddingSeconds, 2)} s | ${megabytes(engines.tfjs.gzipBytes.wasm)} | ${megabytes(engines.tfjs.rawBytes.weights)} |

| native (onnxruntime ${results.peers.onnxruntime}, CPU provider) | Graft images/s | onnxruntime images/s | Graft images per CPU-second | onnxruntime images per CPU-second | Graft / onnxruntime per CPU-second |
|---|---:|---:|---:|---:|---:|
${threads.map((t) => {
  const n = native[`threads${t}`];
  return `| ${t} thread${t > 1 ? 's' : ''} | ${fixed(n.graft.imagesPerSecond)} | ${fixed(n.onnxruntime.imagesPerSecond)} | ${fixed(n.graft.imagesPerCpuSecond)} | ${fixed(n.onnxruntime.imagesPerCpuSecond)} | x${fixed(n.ratioPerCpuSecond, 2)} |`;
}).join('\n')}

Native features: onnxruntime within cosine ${fixed(results.native.lowestCosineVsGraft, 7)} of Graft's on every image.

| acceptance | measured | target | |
|---|---:|---:|---|
${acceptance.map((a) => `| ${a.check} | ${fixed(a.value, 2)} | ${a.target} | ${a.pass ? 'pass' : '**fail**'} |`).join('\n')}
`;

/** Grouped bars: browser images/s on one thread, and native images per CPU-second. */
function chart() {
  const groups = [
    ['browser, 1 thread', 'images/s', [['Graft', speed('graft')], ['ONNX Runtime', speed('ort')], ['TF.js', speed('tfjs')]]],
    ...threads.map((t) => [
      `native, ${t} thread${t > 1 ? 's' : ''}`,
      'images per CPU-second',
      [['Graft', native[`threads${t}`].graft.imagesPerCpuSecond], ['ONNX Runtime', native[`threads${t}`].onnxruntime.imagesPerCpuSecond]],
    ]),
  ];
  const colours = { Graft: '#2f6fbf', 'ONNX Runtime': '#d9822b', 'TF.js': '#4a9d5b' };
  const [height, left, top, bottom, bar, gap] = [320, 50, 50, 60, 40, 50];
  const highest = Math.max(...groups.flatMap(([, , bars]) => bars.map(([, value]) => value)));
  const step = highest > 150 ? 50 : 20;
  const ceiling = Math.ceil(highest / step) * step;
  const y = (value) => top + (height - top - bottom) * (1 - value / ceiling);
  const bars = [];
  let x = left + 20;
  for (const [title, unit, values] of groups) {
    const start = x;
    for (const [name, value] of values) {
      bars.push(`<rect x="${x}" y="${fixed(y(value))}" width="${bar}" height="${fixed(y(0) - y(value))}" fill="${colours[name]}"><title>${name}: ${fixed(value)} ${unit}</title></rect>`);
      bars.push(`<text x="${x + bar / 2}" y="${fixed(y(value) - 4)}" text-anchor="middle">${fixed(value, 0)}</text>`);
      x += bar + 4;
    }
    const middle = (start + x - 4) / 2;
    bars.push(`<text x="${middle}" y="${height - bottom + 18}" text-anchor="middle">${title}</text>`);
    bars.push(`<text x="${middle}" y="${height - bottom + 34}" text-anchor="middle" fill="#666">${unit}</text>`);
    x += gap;
  }
  const width = x;
  const grid = [];
  for (let tick = 0; tick <= ceiling; tick += step) {
    grid.push(`<line x1="${left}" x2="${width - 10}" y1="${y(tick)}" y2="${y(tick)}" stroke="#ddd"/>`);
    grid.push(`<text x="${left - 6}" y="${y(tick) + 4}" text-anchor="end">${tick}</text>`);
  }
  const legend = Object.entries(colours).map(([name, colour], i) =>
    `<rect x="${left + 20 + i * 120}" y="28" width="12" height="12" fill="${colour}"/><text x="${left + 38 + i * 120}" y="38">${name}</text>`);
  const title = `EfficientNet-Lite0 embeddings, same weights and pixels (${results.date.slice(0, 10)}, ${results.machine.cores} cores)`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
<title>${title}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="16" font-weight="bold">${title}</text>
${[...legend, ...grid, ...bars].join('\n')}
</svg>
`;
}

mkdirSync(RESULTS, { recursive: true });
writeFileSync(join(RESULTS, 'peers.json'), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(RESULTS, 'peers.md'), markdown);
writeFileSync(join(RESULTS, 'peers.svg'), chart());
console.log(markdown);
