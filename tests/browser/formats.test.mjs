// One image gate: the CLI and the browser accept and refuse the same files, for the same
// reasons. The files are made here: a real X-ray JPEG, a GIF and a BMP written byte by byte,
// and hostile ones (a JPEG cut short, an SVG, a BMP sliver, a 300 MB file named .jpg, text).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GRAFT_BIN, WEIGHTS, WEIGHTS_FILE, XRAY_DIR, useBrowser, xrayFiles } from './fixtures.mjs';

const session = useBrowser({ webgpu: false });
const BIG_FILE_BYTES = 300 * 2 ** 20;

/** A checkerboard as an uncompressed GIF: 4 colours, and a clear code every two pixels so the
 * LZW code width stays 3 bits (no compressor needed). */
function gif(width, height) {
  const pixels = [];
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) pixels.push(((x >> 3) + (y >> 3)) % 4);
  const codes = [];
  for (let i = 0; i < pixels.length; i += 2) codes.push(4, ...pixels.slice(i, i + 2)); // 4 = clear
  codes.push(5); // end of information
  const packed = [];
  let bits = 0;
  let count = 0;
  for (const code of codes) {
    bits |= code << count;
    count += 3;
    while (count >= 8) {
      packed.push(bits & 0xff);
      bits >>= 8;
      count -= 8;
    }
  }
  if (count) packed.push(bits);
  const blocks = [];
  for (let i = 0; i < packed.length; i += 255) blocks.push(Math.min(255, packed.length - i), ...packed.slice(i, i + 255));
  const le16 = (v) => [v & 0xff, v >> 8];
  return Buffer.from([
    ...Buffer.from('GIF89a'), ...le16(width), ...le16(height), 0x91, 0, 0,
    ...[20, 20, 20, 230, 60, 40, 40, 200, 90, 250, 250, 250], // the palette
    0x2c, ...le16(0), ...le16(0), ...le16(width), ...le16(height), 0,
    2, ...blocks, 0, 0x3b,
  ]);
}

/** Horizontal stripes as a 24-bit BMP. */
function bmp(width, height) {
  const row = Math.ceil((width * 3) / 4) * 4;
  const out = Buffer.alloc(54 + row * height);
  out.write('BM', 0);
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(width, 18);
  out.writeInt32LE(height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  out.writeUInt32LE(row * height, 34);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) out.set((y >> 3) % 2 ? [200, 80, 30] : [30, 160, 220], 54 + y * row + x * 3);
  }
  return out;
}

test('the CLI and the browser accept and refuse the same image files', async () => {
  const xray = readFileSync(join(XRAY_DIR, 'NORMAL', xrayFiles('NORMAL')[0]));
  const files = {
    'xray.jpeg': xray,
    'pattern.gif': gif(64, 48),
    'pattern.bmp': bmp(64, 48),
    'cut.jpeg': xray.subarray(0, Math.floor(xray.length * 0.6)),
    'drawing.svg': Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'),
    'sliver.bmp': bmp(2000, 1),
    'notes.jpg': Buffer.from('not a picture'),
  };
  // name: the reason both give, or null when the image is accepted.
  const expected = {
    'xray.jpeg': null,
    'pattern.gif': null,
    'pattern.bmp': null,
    'cut.jpeg': /cut short|not an image the browser can decode/,
    'drawing.svg': /not a JPEG, PNG, WebP, GIF or BMP image/,
    'sliver.bmp': /2000x1: one side is more than 100 times the other/,
    'notes.jpg': /not a JPEG, PNG, WebP, GIF or BMP image/,
    'big.jpg': /300 MB is more than the 256 MB limit for an image file/,
  };

  const dir = mkdtempSync(join(tmpdir(), 'graft-formats-'));
  const paths = {};
  for (const [name, bytes] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], bytes);
  }
  // The big file: a real JPEG's start, then a sparse hole (nothing written to disk).
  paths['big.jpg'] = join(dir, 'big.jpg');
  writeFileSync(paths['big.jpg'], xray.subarray(0, 64 * 1024));
  truncateSync(paths['big.jpg'], BIG_FILE_BYTES);

  const cli = {};
  for (const [name, path] of Object.entries(paths)) {
    const run = spawnSync(GRAFT_BIN, ['predict', '--imagenet', '--json', path, '--weights', WEIGHTS_FILE], { encoding: 'utf8', maxBuffer: 1 << 26 });
    cli[name] = run.status === 0 ? null : run.stderr;
  }

  const { page, context, errors } = await session.openHarness();
  const browser = await page.evaluate(
    async ({ weights, files, bigHeader, bigBytes }) => {
      const graft = await Graft.create({ weights, backend: 'cpu' });
      const blobs = Object.fromEntries(Object.entries(files).map(([name, bytes]) => [name, new File([new Uint8Array(bytes)], name)]));
      blobs['big.jpg'] = new File([new Uint8Array(bigHeader), new Uint8Array(bigBytes - bigHeader.length)], 'big.jpg');
      const out = {};
      for (const [name, file] of Object.entries(blobs)) {
        out[name] = await graft.addExamples('any', file).then(
          () => null,
          (error) => `${error.code}: ${error.message}`,
        );
      }
      graft.dispose();
      return out;
    },
    {
      weights: WEIGHTS,
      files: Object.fromEntries(Object.entries(files).map(([name, bytes]) => [name, Array.from(bytes)])),
      bigHeader: Array.from(xray.subarray(0, 64 * 1024)),
      bigBytes: BIG_FILE_BYTES,
    },
  );
  await context.close();
  assert.deepEqual(errors, []);

  for (const [name, reason] of Object.entries(expected)) {
    console.log(`${name}: CLI ${cli[name] === null ? 'accepted' : `refused (${cli[name].trim().split('\n')[0]})`}; browser ${browser[name] ?? 'accepted'}`);
    if (reason === null) {
      assert.equal(cli[name], null, `the CLI accepts ${name}`);
      assert.equal(browser[name], null, `the browser accepts ${name}`);
    } else {
      assert.match(cli[name] ?? 'accepted', reason, `the CLI refuses ${name}`);
      assert.match(browser[name] ?? 'accepted', reason, `the browser refuses ${name}`);
      assert.match(cli[name], new RegExp(name.replace('.', '\\.')), `the CLI names ${name}`);
      assert.match(browser[name], /^BAD_IMAGE: /, `the browser's code for ${name}`);
      assert.match(browser[name], new RegExp(name.replace('.', '\\.')), `the browser names ${name}`);
    }
  }
});
