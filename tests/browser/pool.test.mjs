// Embedding over a pool of engines (CPU backend): every core works, the result is the one engine's
// to the bit, in the same order, and an aborted import keeps what it added.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WEIGHTS, useBrowser, xrayFiles, xrayUrl } from './fixtures.mjs';

const session = useBrowser({ webgpu: false });
const IMAGES = [...xrayFiles('NORMAL').slice(0, 24), ...xrayFiles('PNEUMONIA').slice(0, 24)].map((name, i) =>
  xrayUrl(i < 24 ? 'NORMAL' : 'PNEUMONIA', name),
);

test('two workers embed twice as fast as one, with the same features in the same order', async () => {
  const { page, context, errors } = await session.openHarness();
  const outcome = await page.evaluate(
    async ({ weights, urls }) => {
      const files = await fetchImages(urls);
      const engines = { 1: await Graft.create({ weights, backend: 'cpu', workers: 1 }), 2: await Graft.create({ weights, backend: 'cpu', workers: 2 }) };
      const seconds = { 1: 0, 2: 0 };
      const features = {};
      const progress = [];
      // Warm-up: the pool starts with its first call and joins once loaded, well within one pass.
      for (const workers of [1, 2]) await engines[workers].embed(files);
      // Interleaved, so that neither always runs on a quieter machine.
      for (const workers of [1, 2, 2, 1]) {
        const started = performance.now();
        features[workers] = await engines[workers].embed(files, { onProgress: (p) => workers === 2 && progress.push(p.done) });
        seconds[workers] += (performance.now() - started) / 1000;
      }
      const identical = features[1].length === features[2].length && features[1].every((v, i) => v === features[2][i]);
      // addExamples over the pool stores the rows in the order given, under the ids given.
      const ids = files.map((_, i) => `x${i}`);
      const added = await engines[2].addExamples('x', files, { ids });
      const addedInOrder = added.added.map((a) => a.id).join() === ids.join() && added.embeddings.every((v, i) => v === features[1][i]);
      const workers = engines[2].workers;
      Object.values(engines).forEach((e) => e.dispose());
      return { seconds, identical, addedInOrder, workers, lastProgress: progress.slice(-1)[0], rows: features[2].length / 1280 };
    },
    { weights: WEIGHTS, urls: IMAGES },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.equal(outcome.workers, 2);
  assert.equal(outcome.rows, IMAGES.length);
  assert.ok(outcome.identical, 'the pool gives the single engine its features, bit for bit');
  assert.ok(outcome.addedInOrder, 'examples are added in the order given, with the same embeddings');
  assert.equal(outcome.lastProgress, IMAGES.length);
  const speedup = outcome.seconds[1] / outcome.seconds[2];
  console.log(`pool: 1 worker ${(2 * IMAGES.length / outcome.seconds[1]).toFixed(1)} images/s, 2 workers ${(2 * IMAGES.length / outcome.seconds[2]).toFixed(1)} images/s (x${speedup.toFixed(2)})`);
  // Two cores here; the benchmark (make bench-peers) holds the pool to x1.6.
  assert.ok(speedup >= 1.4, `2 workers only x${speedup.toFixed(2)} of 1`);
});

test('an aborted import keeps the images it added and skips the rest; an aborted embed rejects', async () => {
  const { page, context, errors } = await session.openHarness();
  const outcome = await page.evaluate(
    async ({ weights, urls }) => {
      const files = await fetchImages(urls);
      const graft = await Graft.create({ weights, backend: 'cpu', workers: 2 });
      const controller = new AbortController();
      const result = await graft.addExamples('x', files, {
        signal: controller.signal,
        onProgress: (p) => p.done >= 16 && controller.abort(),
      });
      const skippedCodes = [...new Set(result.skipped.map((s) => s.code))];
      const classes = graft.classes();
      // What was added is usable: a second class, then training.
      const again = await graft.addExamples('y', files.slice(-8).map((f) => f.slice(0, f.size, f.type)).reverse(), {});
      const embedAbort = new AbortController();
      const embedOutcome = await graft.embed(files, { signal: embedAbort.signal, onProgress: () => embedAbort.abort() }).then(() => 'finished', (e) => e.code);
      const report = await graft.train({ validationSplit: 0 });
      graft.dispose();
      return { added: result.added.length, rows: result.embeddings.length / 1280, skipped: result.skipped.length, skippedCodes, classes, againAdded: again.added.length, embedOutcome, trained: report.classes?.length ?? report.labels?.length };
    },
    { weights: WEIGHTS, urls: IMAGES },
  );
  await context.close();
  assert.deepEqual(errors, []);
  assert.ok(outcome.added >= 16 && outcome.added < IMAGES.length, `${outcome.added} added before the abort`);
  assert.equal(outcome.rows, outcome.added);
  assert.equal(outcome.added + outcome.skipped, IMAGES.length);
  assert.deepEqual(outcome.skippedCodes, ['ABORTED']);
  assert.deepEqual(outcome.classes, [{ label: 'x', count: outcome.added }]);
  assert.equal(outcome.embedOutcome, 'ABORTED');
  assert.equal(outcome.trained, 2);
});
