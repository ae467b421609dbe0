// What every browser test file shares: the server and Chromium for the file's run, the test
// data, the CLI, and a look inside model files.
import { after, before } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, openHarness } from './chromium.mjs';
import { repoRoot, sharedRoot, startServer } from './server.mjs';

/** The backbone as the page fetches it, and as the CLI reads it. */
export const WEIGHTS = '/weights/efficientnet_lite0.safetensors';
export const WEIGHTS_FILE = join(repoRoot, 'weights', 'efficientnet_lite0.safetensors');
export const GRAFT_BIN = process.env.GRAFT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'release', 'graft');
export const XRAY_DIR = join(sharedRoot, 'datasets', 'chest_xray_pneumonia');

/** Sorted file names of one X-ray class. */
export const xrayFiles = (label) => readdirSync(join(XRAY_DIR, label)).sort();
/** Where the test server serves an X-ray. */
export const xrayUrl = (label, name) => `/datasets/chest_xray_pneumonia/${label}/${name}`;

/**
 * Starts the server and Chromium before the file's tests and stops them after; the returned
 * object's `server` and `browser` are set once `before` ran. `openHarness()` opens a fresh
 * context on the test harness page (which exposes `Graft`, `fetchImages`, `countFrames`).
 */
export function useBrowser({ webgpu = true } = {}) {
  const session = {
    server: null,
    browser: null,
    openHarness: (options) => openHarness(session.browser, session.server.origin, options),
  };
  before(async () => {
    session.server = await startServer();
    session.browser = await launchChromium({ webgpu });
  });
  after(async () => {
    await session.browser?.close();
    await session.server?.close();
  });
  return session;
}

/** Runs the CLI and returns its stdout; it throws with the CLI's stderr when it fails. */
export function graft(args) {
  return execFileSync(GRAFT_BIN, [...args, '--weights', WEIGHTS_FILE], { encoding: 'utf8', maxBuffer: 256 << 20 });
}

/** Writes bytes to a new temporary file and returns its path. */
export function temporaryFile(name, bytes) {
  const path = join(mkdtempSync(join(tmpdir(), 'graft-test-')), name);
  writeFileSync(path, Buffer.from(bytes));
  return path;
}

/** A model file's `graft.model` description and tensor names. */
export function modelHeader(bytes) {
  const buffer = Buffer.from(bytes);
  const length = Number(buffer.readBigUInt64LE(0));
  const header = JSON.parse(buffer.subarray(8, 8 + length).toString('utf8'));
  return { info: JSON.parse(header.__metadata__['graft.model']), tensors: Object.keys(header).filter((k) => k !== '__metadata__') };
}

/** `graft predict --json` of these files with this model: one array of `{ label, score }` per file. */
export function cliPredictions(modelBytes, paths) {
  const model = temporaryFile('model.safetensors', modelBytes);
  return JSON.parse(graft(['predict', '--model', model, '--top-k', '10', '--json', ...paths])).map((entry) => entry.predictions);
}
