// Explanations in the browser are the CLI's: the same X-ray (as PNG, which both decode exactly)
// gets the same heat map (within 0.05 per cell) and the same region from `graft.explain` as from
// `graft explain --json`, 7x7 and `fine` 14x14, on the CPU backend and on WebGPU; a class can be named; a bad one is refused by code; and
// `drawExplanation` paints the map over the image at its own size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WEIGHTS, XRAY_DIR, graft, useBrowser, xrayFiles, xrayUrl } from './fixtures.mjs';

const NORMAL = xrayFiles('NORMAL');
const PNEUMONIA = xrayFiles('PNEUMONIA');
const session = useBrowser();

test('the same X-ray gets the same heat map in the browser (CPU and WebGPU) as in the CLI', async () => {
  const data = mkdtempSync(join(tmpdir(), 'graft-explain-'));
  for (const [label, names] of [['NORMAL', NORMAL], ['PNEUMONIA', PNEUMONIA]]) {
    mkdirSync(join(data, label));
    for (const name of names.slice(0, 25)) copyFileSync(join(XRAY_DIR, label, name), join(data, label, name));
  }
  const modelPath = join(data, 'model.safetensors');
  graft(['train', '--data', data, '--out', modelPath]);
  const held = [...NORMAL.slice(-3).map((n) => ['NORMAL', n]), ...PNEUMONIA.slice(-3).map((n) => ['PNEUMONIA', n])];

  const { page, context, errors } = await session.openHarness();
  const browser = await page.evaluate(
    async ({ weights, model, urls }) => {
      // PNG copies of the X-rays, so that the CLI sees the same pixels (the JPEG decoders'
      // difference is measured below, not asserted).
      const jpegs = await fetchImages(urls);
      const { files, base64: pngs } = await pngCopies(jpegs);
      const out = { pngs };
      for (const backend of ['cpu', 'webgpu']) {
        const graft = await Graft.load({ weights, model: new Uint8Array(model), backend });
        const runs = [];
        for (const file of backend === 'cpu' ? files : files.slice(0, 2)) {
          const { predictions, explanation } = await graft.explain(file, { topK: 2 });
          runs.push({ predictions, ...explanation, heatmap: Array.from(explanation.heatmap), colours: explanation.colours.length, typed: explanation.heatmap instanceof Float32Array && explanation.colours instanceof Uint8ClampedArray });
        }
        out[backend] = runs;
        out[`${backend}Fine`] = [];
        for (const file of backend === 'cpu' ? files : files.slice(0, 1)) {
          const { explanation } = await graft.explain(file, { fine: true });
          out[`${backend}Fine`].push({ ...explanation, heatmap: Array.from(explanation.heatmap), colours: explanation.colours.length });
        }
        if (backend === 'cpu') {
          out.jpeg = [];
          for (const jpeg of jpegs) out.jpeg.push(Array.from((await graft.explain(jpeg)).explanation.heatmap));
          const named = await graft.explain(files[3], { label: 'NORMAL' });
          out.named = { label: named.explanation.label, score: named.explanation.score, heatmap: Array.from(named.explanation.heatmap) };
          out.bad = await graft.explain(files[0], { label: 'cow' }).then(() => null, (e) => ({ code: e.code, message: e.message }));
          out.badFine = await graft.explain(files[0], { fine: 'yes' }).then(() => null, (e) => e.code);
          // Drawn over the image at its own size.
          const canvas = document.createElement('canvas');
          const { explanation } = await graft.explain(files[0]);
          await drawExplanation(canvas, files[0], explanation, { opacity: 1 });
          const bitmap = await createImageBitmap(files[0]);
          out.drawn = { width: canvas.width, height: canvas.height, natural: [bitmap.width, bitmap.height] };
        }
        graft.dispose();
      }
      return out;
    },
    { weights: WEIGHTS, model: Array.from(readFileSync(modelPath)), urls: held.map(([label, name]) => xrayUrl(label, name)) },
  );
  await context.close();
  assert.deepEqual(errors, []);
  const pngPaths = browser.pngs.map((base64, i) => {
    const path = join(data, `held-${i}.png`);
    writeFileSync(path, Buffer.from(base64, 'base64'));
    return path;
  });
  const cli = JSON.parse(graft(['explain', '--model', modelPath, '--json', ...pngPaths]));
  const cliFine = JSON.parse(graft(['explain', '--model', modelPath, '--fine', '--json', ...pngPaths]));
  const cliNamed = JSON.parse(graft(['explain', '--model', modelPath, '--label', 'NORMAL', '--json', pngPaths[3]]));
  const cliJpeg = JSON.parse(graft(['explain', '--model', modelPath, '--json', ...held.map(([label, name]) => join(XRAY_DIR, label, name))]));
  const jpegWorst = Math.max(...browser.jpeg.flatMap((map, i) => map.map((v, k) => Math.abs(v - cliJpeg[i].heatmap.flat()[k]))));
  console.log(`the same JPEG files (decoders differ): largest heat-map difference ${jpegWorst.toFixed(4)}`);

  let worst = 0;
  for (const [i, web] of browser.cpu.entries()) {
    const expected = cli[i];
    assert.ok(web.typed, 'heatmap is a Float32Array and colours a Uint8ClampedArray');
    assert.equal(web.label, expected.label, `image ${i}: the class explained is the predicted one`);
    assert.equal(web.label, web.predictions[0].label);
    assert.ok(Math.abs(web.score - expected.score) < 0.01, `image ${i} score ${web.score} vs ${expected.score}`);
    assert.equal(web.rows, 7);
    assert.equal(web.cols, 7);
    assert.equal(web.colours, 7 * 7 * 4);
    const flat = expected.heatmap.flat();
    worst = Math.max(worst, ...web.heatmap.map((v, k) => Math.abs(v - flat[k])));
    for (const key of ['x', 'y', 'width', 'height']) assert.ok(Math.abs(web.region[key] - expected.region[key]) < 1e-3, `${key}: ${web.region[key]} vs ${expected.region[key]}`);
  }
  console.log(`largest heat-map difference, browser CPU vs CLI, over ${browser.cpu.length} X-rays (PNG): ${worst.toFixed(4)}`);
  assert.ok(worst <= 0.05, `maps differ by up to ${worst}`);
  // WebGPU computes the same maps (reading them back asynchronously).
  for (const [i, gpu] of browser.webgpu.entries()) {
    const difference = Math.max(...gpu.heatmap.map((v, k) => Math.abs(v - browser.cpu[i].heatmap[k])));
    assert.ok(difference <= 0.01, `WebGPU image ${i}: differs from the CPU by ${difference}`);
  }
  // The fine map: 14x14, the CLI's, on both backends.
  let worstFine = 0;
  for (const [i, web] of browser.cpuFine.entries()) {
    const expected = cliFine[i];
    assert.equal(web.label, expected.label);
    assert.deepEqual([web.rows, web.cols, web.colours], [14, 14, 14 * 14 * 4]);
    worstFine = Math.max(worstFine, ...web.heatmap.map((v, k) => Math.abs(v - expected.heatmap.flat()[k])));
    for (const key of ['x', 'y', 'width', 'height']) assert.ok(Math.abs(web.region[key] - expected.region[key]) < 1e-3, `fine ${key}: ${web.region[key]} vs ${expected.region[key]}`);
  }
  console.log(`largest fine (14x14) heat-map difference, browser CPU vs CLI: ${worstFine.toFixed(4)}`);
  assert.ok(worstFine <= 0.05, `fine maps differ by up to ${worstFine}`);
  const gpuFine = Math.max(...browser.webgpuFine[0].heatmap.map((v, k) => Math.abs(v - browser.cpuFine[0].heatmap[k])));
  console.log(`largest fine heat-map difference, WebGPU vs CPU: ${gpuFine.toFixed(4)}`);
  assert.ok(gpuFine <= 0.01, `fine WebGPU map differs from the CPU by ${gpuFine}`);
  assert.equal(browser.badFine, 'INVALID_ARGUMENT');
  // A named class: its own map and score, the CLI's.
  assert.equal(browser.named.label, 'NORMAL');
  assert.equal(cliNamed[0].label, 'NORMAL');
  assert.ok(Math.max(...browser.named.heatmap.map((v, k) => Math.abs(v - cliNamed[0].heatmap.flat()[k]))) <= 0.05);
  assert.equal(browser.bad?.code, 'INVALID_OPTION');
  assert.match(browser.bad.message, /'cow' is not one of the model's classes \(NORMAL, PNEUMONIA\)/);
  assert.deepEqual([browser.drawn.width, browser.drawn.height], browser.drawn.natural);
});
