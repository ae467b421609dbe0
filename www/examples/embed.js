// The README's example, runnable: train on two folders of images, then predict.
import { Graft } from 'graft';

const $ = (id) => document.getElementById(id);
const log = (text) => ($('log').textContent = text);

const graft = await Graft.create({
  weights: '../../weights/efficientnet_lite0.safetensors',
  onProgress: (p) => p.status === 'progress' && p.total && log(`weights ${Math.round((100 * p.loaded) / p.total)}%`),
});
log(`ready on ${graft.backend}`);

$('train').onclick = async () => {
  await graft.addExamples('A', $('class-a').files);
  await graft.addExamples('B', $('class-b').files);
  const report = await graft.train({ epochs: 10, onEpoch: (e) => log(`epoch ${e.epoch}: accuracy ${(100 * e.accuracy).toFixed(1)}%`) });
  log(`trained: best epoch ${report.bestEpoch}`);
};

$('query').onchange = async () => {
  const [top] = await graft.predict($('query').files[0]);
  log(`${top.label} (${(100 * top.score).toFixed(1)}%)`);
};
