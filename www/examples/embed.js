// The package README's example, runnable: train on two folders of images, then predict.
import { Graft } from 'graft';

const $ = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
const log = (/** @type {string} */ text) => ($('log').textContent = text);

const graft = await Graft.create({
  weights: '../../weights/efficientnet_lite0.safetensors',
  onProgress: (p) => {
    if (p.status === 'progress' && p.total && p.loaded !== undefined) log(`weights ${Math.round((100 * p.loaded) / p.total)}%`);
  },
});
log(`ready on ${graft.backend}`);

$('train').onclick = async () => {
  await graft.addExamples('A', $('class-a').files ?? []);
  await graft.addExamples('B', $('class-b').files ?? []);
  const report = await graft.train({
    onProgress: (event) => {
      if (event.status === 'search') log(`choosing the head's regularisation: ${event.index} of at most ${event.of}`);
    },
  });
  log(`trained: ${report.validation ? `${(100 * report.validation.accuracy).toFixed(1)}% of ${report.validationImages} held-out images` : 'no held-out images'}`);
};

$('query').onchange = async () => {
  const file = $('query').files?.[0];
  if (!file) return;
  const [top] = await graft.predict(file);
  log(`${top.label} (${(100 * top.score).toFixed(1)}%)`);
};
