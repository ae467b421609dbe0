// The engine at scale in headless Chromium: a project too large to train is refused before an
// image is decoded, with the most it takes, and a project of exactly that size trains within a
// tab's memory; a thousand classes train and report in bounded size. (Past about 100,000
// images in 10 classes, the engine used to die with `unreachable` while training.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WEIGHTS, useBrowser, xrayFiles, xrayUrl } from './fixtures.mjs';

const session = useBrowser({ webgpu: false });

test('past the most images training fits in memory, adding is refused with that number; at it, training fits', async () => {
  const { page, context, errors } = await session.openHarness();
  const result = await page.evaluate(
    async ({ weights, xray }) => {
      const graft = await Graft.create({ weights, backend: 'cpu' });
      const classes = 10;
      // Clustered embeddings, 1,000 per call, in class after class.
      let seed = 1;
      const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const centres = Array.from({ length: classes }, () => Float32Array.from({ length: 1280 }, () => 2 * random()));
      let added = 0;
      let calls = 0;
      const add = async (count) => {
        const label = `class ${calls % classes}`;
        const centre = centres[calls++ % classes];
        const embeddings = new Float32Array(count * 1280);
        for (let i = 0; i < embeddings.length; i++) embeddings[i] = centre[i % 1280] + 1.5 * (random() - 0.5);
        const ids = Array.from({ length: count }, (_, i) => `example ${added + i}`);
        await graft.addEmbeddings(label, embeddings, { ids, hashes: ids });
        added += count;
      };
      const refusal = async (work) => {
        try {
          await work();
          return null;
        } catch (error) {
          return { code: error.code, message: error.message };
        }
      };
      // Fill until refused; the refusal names the most, which is then filled exactly.
      let refused = null;
      while (!refused) refused = await refusal(() => add(1000));
      const most = Number(/at most (\d+) images/.exec(refused.message)?.[1]);
      while (added < most) await add(Math.min(1000, most - added));
      const oneMore = await refusal(() => add(1));
      const file = (await fetchImages([xray]))[0];
      let started = performance.now();
      const image = await refusal(() => graft.addExamples('class 0', [file]));
      const imageSeconds = (performance.now() - started) / 1000;
      const memoryBefore = (await graft.stats()).wasmMemoryBytes;
      started = performance.now();
      const report = await graft.train({});
      const trainSeconds = (performance.now() - started) / 1000;
      const memoryAfter = (await graft.stats()).wasmMemoryBytes;
      const count = graft.classes().reduce((n, c) => n + c.count, 0);
      graft.dispose();
      return { refused, most, added, count, oneMore, image, imageSeconds, memoryBefore, memoryAfter, trainSeconds, accuracy: report.validation.accuracy };
    },
    { weights: WEIGHTS, xray: xrayUrl('NORMAL', xrayFiles('NORMAL')[0]) },
  );
  await context.close();
  const gigabytes = (bytes) => (bytes / 2 ** 30).toFixed(2);
  console.log(
    `limit ${result.most} images in 10 classes; trained in ${result.trainSeconds.toFixed(0)} s, accuracy ${result.accuracy}; wasm memory ${gigabytes(result.memoryBefore)} GiB before training, ${gigabytes(result.memoryAfter)} GiB after`,
  );
  assert.deepEqual(errors, []);
  for (const refusal of [result.refused, result.oneMore, result.image]) {
    assert.equal(refusal?.code, 'TOO_LARGE', JSON.stringify(refusal));
    assert.match(refusal.message, /in 10 classes: too many to train .*at most \d+ images: remove images or classes/);
  }
  // Tens of thousands of images fit; the refused call added nothing.
  assert.ok(result.most >= 50_000, `the limit is ${result.most} images`);
  assert.equal(result.count, result.most);
  // Refused before decoding or embedding the image (which takes about a second here).
  assert.ok(result.imageSeconds < 0.5, `the refusal took ${result.imageSeconds} s`);
  // At the limit, training fits, with room left under wasm32's 4 GiB.
  assert.ok(result.accuracy > 0.99, `accuracy ${result.accuracy}`);
  assert.ok(result.memoryAfter < 3.5 * 2 ** 30, `wasm memory ${result.memoryAfter} bytes`);
});

test('a thousand classes train, with a report bounded in size, and predict', async () => {
  const { page, context, errors } = await session.openHarness();
  const classes = 1000;
  const result = await page.evaluate(
    async ({ weights, classes, xray }) => {
      const graft = await Graft.create({ weights, backend: 'cpu' });
      let seed = 2;
      const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const perClass = 5;
      for (let c = 0; c < classes; c++) {
        const centre = Float32Array.from({ length: 1280 }, () => 2 * random());
        const embeddings = new Float32Array(perClass * 1280);
        for (let i = 0; i < embeddings.length; i++) embeddings[i] = centre[i % 1280] + 1.5 * (random() - 0.5);
        const ids = Array.from({ length: perClass }, (_, i) => `class ${c} example ${i}`);
        await graft.addEmbeddings(`class ${c}`, embeddings, { ids, hashes: ids });
      }
      const started = performance.now();
      const training = await countFrames(() => graft.train({}));
      const report = training.result;
      const predictions = await graft.predict((await fetchImages([xray]))[0], { topK: 5 });
      graft.dispose();
      return {
        trainSeconds: (performance.now() - started) / 1000,
        frames: training.frames,
        reportBytes: new TextEncoder().encode(JSON.stringify(report)).length,
        labels: report.labels.length,
        accuracy: report.validation.accuracy,
        confusion: report.validation.confusion,
        topConfusions: report.validation.topConfusions?.length,
        predictions: predictions.length,
      };
    },
    { weights: WEIGHTS, classes, xray: xrayUrl('NORMAL', xrayFiles('NORMAL')[0]) },
  );
  await context.close();
  console.log(`${classes} classes: trained in ${result.trainSeconds.toFixed(0)} s, report ${result.reportBytes} bytes, accuracy ${result.accuracy}`);
  assert.deepEqual(errors, []);
  assert.equal(result.labels, classes);
  assert.ok(result.accuracy > 0.9, `accuracy ${result.accuracy}`);
  // Summarised past 100 classes: a dense 1000 x 1000 matrix alone would be about 2 MB.
  assert.equal(result.confusion, null);
  assert.ok(result.topConfusions <= 50);
  assert.ok(result.reportBytes < 256 << 10, `a ${result.reportBytes}-byte report`);
  assert.equal(result.predictions, 5);
  // The page stays responsive while the worker trains: at least 5 frames a second.
  assert.ok(result.frames >= 5 * result.trainSeconds, `${result.frames} frames in ${result.trainSeconds} s`);
});
