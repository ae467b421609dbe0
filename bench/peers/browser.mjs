// The browser half of the peer benchmark: Graft's CPU backend, ONNX Runtime Web (wasm, 1
// thread) and TF.js (wasm backend) on the same network, weights and pixels, interleaved in one
// headless Chromium (the machine is shared: only ratios within one run mean much).
//   throughput       48 X-rays in batches of 8, engines in turn (A B C D, then D C B A, ...)
//                    after one warm-up batch each; Graft with 1 worker and with 2
//   first embedding  a fresh context per run: navigation start to the first features
//   sizes            every file an engine fetched for its first embedding, raw and gzip -9
// Needs bench/peers/build (build_models.py) and bench/peers/node_modules (npm ci); writes
// bench/peers/build/browser.json for combine.mjs.
//   node bench/peers/browser.mjs [--rounds N] [--first-runs N]
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { repoRoot, sharedRoot, startServer } from '../../tests/browser/server.mjs';

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, 'first-runs': { type: 'string', default: '7' } },
});
const ROUNDS = Number(args.rounds);
const FIRST_RUNS = Number(args['first-runs']);
const BATCH = 8;
const PER_CLASS = 24;
const FEATURES = 1280;
/** Below this, an engine is not computing Graft's network on Graft's pixels. */
const MIN_COSINE = 0.999;
const BUILD = join(repoRoot, 'bench', 'peers', 'build');
// The scaffolding of the bench pages, not part of any engine.
const PAGE_FILES = ['/bench/peers/first.html', '/bench/peers/first.js', '/bench/peers/engines.js'];

/** The throughput engines: key, engine, options. */
const ENGINES = [
  ['graft', 'graft', { workers: 1 }],
  ['ort', 'ort', {}],
  ['tfjs', 'tfjs', {}],
  ['graft2', 'graft', { workers: 2 }],
];

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/** The lowest cosine similarity between matching rows of two n x 1280 arrays. */
function lowestCosine(a, b) {
  let lowest = Infinity;
  for (let row = 0; row < a.length / FEATURES; row++) {
    let dot = 0, aa = 0, bb = 0;
    for (let i = row * FEATURES; i < (row + 1) * FEATURES; i++) {
      dot += a[i] * b[i];
      aa += a[i] * a[i];
      bb += b[i] * b[i];
    }
    lowest = Math.min(lowest, dot / Math.sqrt(aa * bb));
  }
  return lowest;
}

function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    ignoreDefaultArgs: ['--headless', '--headless=old'],
    args: ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url);
  return { context, page, errors };
}

async function throughput(browser, origin) {
  const xrays = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');
  const urls = ['NORMAL', 'PNEUMONIA'].flatMap((label) =>
    readdirSync(join(xrays, label)).sort().slice(0, PER_CLASS).map((name) => `/datasets/chest_xray_pneumonia/${label}/${name}`),
  );
  const { context, page, errors } = await openPage(browser, `${origin}/bench/peers/page.html`);
  try {
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready');
    await page.evaluate((list) => window.peers.loadImages(list), urls);
    const info = {};
    for (const [key, name, options] of ENGINES) {
      info[key] = await page.evaluate(([k, n, o, b]) => window.peers.start(k, n, o, b), [key, name, options, BATCH]);
    }
    const seconds = Object.fromEntries(ENGINES.map(([key]) => [key, []]));
    const features = {};
    for (let round = 0; round < ROUNDS; round++) {
      const order = ENGINES.map(([key]) => key);
      for (const key of round % 2 ? order.reverse() : order) {
        const result = await page.evaluate(([k, b, keep]) => window.peers.run(k, b, keep), [key, BATCH, round === 0]);
        seconds[key].push(result.seconds);
        if (result.features) features[key] = result.features;
        console.log(`round ${round + 1}, ${key}: ${(urls.length / result.seconds).toFixed(1)} images/s`);
      }
    }
    if (errors.length) throw new Error(errors.join('\n'));
    const lowestCosineVsGraft = Object.fromEntries(['ort', 'tfjs', 'graft2'].map((key) => [key, lowestCosine(features.graft, features[key])]));
    for (const [key, cosine] of Object.entries(lowestCosineVsGraft)) {
      if (!(cosine > MIN_COSINE)) throw new Error(`${key}'s features are not Graft's (cosine ${cosine}): not the same network or pixels`);
    }
    return {
      images: urls.length,
      batch: BATCH,
      rounds: ROUNDS,
      info,
      engines: Object.fromEntries(
        ENGINES.map(([key]) => [key, { seconds: seconds[key], imagesPerSecond: urls.length / median(seconds[key]) }]),
      ),
      lowestCosineVsGraft,
    };
  } finally {
    await context.close();
  }
}

/** A file the server sent, with its size raw and gzipped at level 9. */
function fileSize(url) {
  const path = join(repoRoot, decodeURIComponent(url));
  const bytes = readFileSync(path);
  const kind = /\.wasm$/.test(path) ? 'wasm' : /\.m?js$/.test(path) ? 'js' : 'weights';
  return { url, kind, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length };
}

async function firstEmbedding(browser, server) {
  const names = ['graft', 'ort', 'tfjs'];
  const seconds = Object.fromEntries(names.map((name) => [name, []]));
  const files = {};
  for (let run = 0; run < FIRST_RUNS; run++) {
    for (const name of run % 2 ? [...names].reverse() : names) {
      const before = server.requests.length;
      const { context, page, errors } = await openPage(browser, `${server.origin}/bench/peers/first.html?engine=${name}`);
      try {
        const result = await (await page.waitForFunction(() => window.first, null, { timeout: 120_000 })).jsonValue();
        if (result.error) throw new Error(`${name}: ${result.error}`);
        if (errors.length) throw new Error(`${name}: ${errors.join('\n')}`);
        seconds[name].push(result.seconds);
      } finally {
        await context.close();
      }
      const urls = new Set(server.requests.slice(before).map((r) => r.url.split('?')[0]));
      // A URL with no file behind it (the favicon) was a 404: nothing transferred.
      const served = [...urls].filter((url) => !PAGE_FILES.includes(url) && existsSync(join(repoRoot, decodeURIComponent(url))));
      files[name] = served.sort().map(fileSize);
      console.log(`first embedding, ${name}: ${seconds[name].at(-1).toFixed(2)} s`);
    }
  }
  const total = (list, kind, field) => list.filter((f) => !kind || f.kind === kind).reduce((sum, f) => sum + f[field], 0);
  return Object.fromEntries(
    names.map((name) => [
      name,
      {
        seconds: seconds[name],
        medianSeconds: median(seconds[name]),
        files: files[name],
        gzipBytes: { wasm: total(files[name], 'wasm', 'gzipBytes'), js: total(files[name], 'js', 'gzipBytes'), weights: total(files[name], 'weights', 'gzipBytes'), all: total(files[name], null, 'gzipBytes') },
        rawBytes: { wasm: total(files[name], 'wasm', 'bytes'), weights: total(files[name], 'weights', 'bytes') },
      },
    ]),
  );
}

const server = await startServer();
const browser = await launch();
let result;
try {
  result = {
    date: new Date().toISOString(),
    chromium: browser.version(),
    throughput: await throughput(browser, server.origin),
    firstEmbedding: await firstEmbedding(browser, server),
  };
} finally {
  await browser.close();
  await server.close();
}
writeFileSync(join(BUILD, 'browser.json'), `${JSON.stringify(result, null, 2)}\n`);
const { engines, lowestCosineVsGraft: cosine } = result.throughput;
console.log(
  `images/s: ${Object.entries(engines).map(([key, e]) => `${key} ${e.imagesPerSecond.toFixed(1)}`).join(', ')}; ` +
    `lowest cosine vs Graft: ORT ${cosine.ort.toFixed(6)}, TF.js ${cosine.tfjs.toFixed(6)}; written to ${join(BUILD, 'browser.json')}`,
);
