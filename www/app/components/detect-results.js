// Results of the last training on the held-out images: mAP50, mAP50-95, precision and recall,
// AP per class, and each class's precision-recall curve at IoU 0.5 (COCO's 101 recall points).

import { h, render, percent } from '../dom.js';
import { curvesChart } from './charts.js';

const RECALLS = Array.from({ length: 101 }, (_, i) => i / 100);

export function detectResultsPanel(workspace) {
  const body = h('div', { class: 'results-body' });
  const prChart = curvesChart({ title: 'Precision-recall at IoU 0.5, per class', key: 'pr', xLabel: 'recall', percentX: true, percentY: true });
  const root = h(
    'section',
    { class: 'panel', id: 'results', 'aria-labelledby': 'results-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'results-title' }, '3 · Results')),
    body,
    h('div', { class: 'charts' }, prChart.element),
  );
  let shown;

  function draw() {
    const report = workspace.state.report;
    if (report === shown) return;
    shown = report;
    const evaluation = report?.evaluation;
    if (!evaluation) {
      prChart.set([], [], '');
      render(body, h('p', { class: 'empty' }, report ? 'No image was held out, so there is nothing to measure: mark some images “Held out” and train again.' : 'Train a detector to see how well it finds the objects in images it did not learn from.'));
      return;
    }
    const headline = h(
      'dl',
      { class: 'headline' },
      metric('mAP50', percent(evaluation.mAP50), 'mean AP at IoU 0.5', 'map50'),
      metric('mAP50-95', percent(evaluation.mAP50_95), 'mean AP over IoU 0.50 to 0.95', 'map50-95'),
      metric('Precision', percent(evaluation.precision), 'found boxes that are right', 'precision'),
      metric('Recall', percent(evaluation.recall), 'objects found', 'recall'),
    );
    const threshold = evaluation.scoreThreshold === null || evaluation.scoreThreshold === undefined ? '' : ` Precision and recall at score ${evaluation.scoreThreshold.toFixed(2)}, the threshold with the best F1.`;
    const note = h('p', { class: 'hint' }, `${evaluation.instances} objects in ${evaluation.images} held-out images.${threshold}`);
    const table = h(
      'table',
      { class: 'per-class', id: 'per-class-ap' },
      h('caption', {}, 'Per class'),
      h('thead', {}, h('tr', {}, ['Class', 'Objects', 'Found', 'AP50', 'AP50-95', 'Precision', 'Recall'].map((name) => h('th', { scope: 'col' }, name)))),
      h(
        'tbody',
        {},
        evaluation.perClass.map((c) =>
          h('tr', { 'data-class': c.name }, h('th', { scope: 'row' }, c.name), h('td', {}, c.instances), h('td', {}, c.detections), h('td', {}, percent(c.ap50)), h('td', {}, percent(c.ap50_95)), h('td', {}, percent(c.precision)), h('td', {}, percent(c.recall))),
        ),
      ),
    );
    render(body, headline, note, h('div', { class: 'table-scroll' }, table));
    // A class without objects among the held-out images has no curve.
    const curves = evaluation.perClass.filter((c) => Array.isArray(c.precisionRecall)).map((c) => ({ label: c.name, values: c.precisionRecall }));
    prChart.set(curves.length ? RECALLS : [], curves, curves.map((c) => `${c.label}: precision ${percent(c.values[50])} at recall 50%`).join('; '));
  }

  workspace.addEventListener('change', draw);
  draw();
  return root;
}

function metric(name, value, note, key) {
  return h('div', { class: 'metric', 'data-metric': key }, h('dt', {}, name), h('dd', {}, h('span', { class: 'value' }, value), h('small', {}, note)));
}
