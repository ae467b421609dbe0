// Results of the last training on the held-out images: accuracy (and, for two classes,
// sensitivity, specificity and ROC AUC), per-class precision and recall, a confusion-matrix
// heat map and the images the model got wrong, each opening with the heat maps of the class
// predicted and the true class side by side.

import { drawExplanation } from '../../../pkg/graft.js';
import { h, render, percent } from '../dom.js';
import { UrlPool } from '../images.js';
import { guarded } from './notices.js';

/** At most this many misclassified images are drawn. */
const MAX_MISTAKES = 24;

/**
 * The two-class numbers with `positive` as the positive class. The engine treats its second
 * label as positive; when the preset names the other one, sensitivity and specificity swap
 * (ROC AUC is the same either way).
 */
export function screeningMetrics(evaluation, positive) {
  const binary = evaluation?.binary;
  if (!binary) return null;
  if (!positive || positive === binary.positive || !evaluation.labels.includes(positive)) return binary;
  return { positive, sensitivity: binary.specificity, specificity: binary.sensitivity, rocAuc: binary.rocAuc };
}

/** What a heat map can and cannot tell, shown beside the screening numbers. */
const MAP_NOTE =
  'Click a misclassified image to see, side by side, where the evidence for the class predicted and for the true class lies (heat maps, brighter is stronger). ' +
  'A map shows what the score rests on: a model that learned a text marker, a border or a device instead of the lungs shows it plainly. ' +
  'It cannot tell whether a finding is real, and its 7 x 7 cells only point at a region: it is no segmentation and no diagnosis.';

export function resultsPanel(workspace, { positive, notify } = {}) {
  const urls = new UrlPool();
  const body = h('div', { class: 'results-body' });
  const comparison = h('div', { class: 'map-comparison', id: 'mistake-maps', 'aria-live': 'polite' });
  const root = h('section', { class: 'panel', id: 'results', 'aria-labelledby': 'results-title' }, h('header', { class: 'panel-head' }, h('h2', { id: 'results-title' }, '3 · Results')), body);
  let shown;

  async function draw() {
    const report = workspace.state.report;
    if (report === shown) return;
    shown = report;
    urls.clear();
    const evaluation = report?.validation;
    if (!evaluation) {
      render(body, h('p', { class: 'empty' }, report ? 'No images were held out, so there is nothing to measure.' : 'Train a model to see how well it does on images it did not learn from.'));
      return;
    }
    const screening = screeningMetrics(evaluation, positive);
    const headline = h(
      'dl',
      { class: 'headline' },
      metric('Validation accuracy', percent(evaluation.accuracy), `${Math.round(evaluation.accuracy * evaluation.images)} of ${evaluation.images} held-out images`, 'accuracy'),
      screening && metric('Sensitivity', percent(screening.sensitivity), `share of ${screening.positive} cases found`, 'sensitivity'),
      screening && metric('Specificity', percent(screening.specificity), `share of other cases cleared`, 'specificity'),
      screening && metric('ROC AUC', screening.rocAuc === null ? '—' : screening.rocAuc.toFixed(3), `${screening.positive} as positive`, 'auc'),
    );
    const perClass = h(
      'table',
      { class: 'per-class' },
      h('caption', {}, 'Per class'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Class'), h('th', { scope: 'col' }, 'Images'), h('th', { scope: 'col' }, 'Precision'), h('th', { scope: 'col' }, 'Recall'))),
      h('tbody', {}, evaluation.perClass.map((c) => h('tr', {}, h('th', { scope: 'row' }, c.label), h('td', {}, c.support), h('td', {}, percent(c.precision)), h('td', {}, percent(c.recall))))),
    );
    const mistakesList = h('ul', { class: 'mistakes' });
    const tune = report.fineTune;
    const fineTuning = tune
      ? h('details', { class: 'fine-tune-notes' }, h('summary', {}, tune.bestEpoch > 0 ? `Fine-tuned model (last ${tune.plan.blocks} backbone blocks, epoch ${tune.bestEpoch} kept)` : 'Fine-tuning did not beat the head alone; the head-only model was kept'), h('ul', {}, tune.notes.map((note) => h('li', {}, note))))
      : null;
    const choices = report.notes?.length
      ? h('details', { class: 'training-notes' }, h('summary', {}, 'What Graft chose while training'), h('ul', {}, report.notes.map((note) => h('li', {}, note))))
      : null;
    const note = positive ? h('p', { class: 'map-note', id: 'map-note' }, MAP_NOTE) : null;
    render(comparison);
    render(body, headline, note, fineTuning, choices, h('div', { class: 'result-grid' }, h('div', { class: 'table-scroll' }, confusionMatrix(evaluation)), h('div', { class: 'table-scroll' }, perClass)), h('h3', {}, 'Misclassified held-out images'), mistakesList, comparison);
    await drawMistakes(report, mistakesList);
  }

  /** The held-out images whose predicted class is not theirs, found by id among the stored images. */
  async function drawMistakes(report, list) {
    const wrong = report.validationExamples.filter((e) => e.predicted !== e.label);
    if (!wrong.length) {
      render(list, h('li', { class: 'empty' }, 'None: every held-out image was classified correctly.'));
      return;
    }
    const shownMistakes = wrong.slice(0, MAX_MISTAKES);
    const records = await workspace.store.images(shownMistakes.map((e) => e.id));
    if (workspace.state.report !== report) return; // a newer report is being drawn
    const byId = new Map(records.map((r) => [r.id, r]));
    render(
      list,
      shownMistakes.map((example) => {
        const record = byId.get(example.id);
        const actual = report.labels[example.label];
        const predicted = report.labels[example.predicted];
        const confidence = percent(example.score ?? example.probabilities[example.predicted], 0); // reports saved before scores
        const open = record?.blob ? () => guarded(notify, () => compare(record, predicted, actual)) : null;
        return h(
          'li',
          { class: 'mistake', 'data-image-id': example.id },
          h(
            'button',
            {
              type: 'button',
              class: 'mistake-open',
              disabled: !open,
              onclick: open,
              'aria-label': record ? `Show the heat maps of ${predicted} and ${actual} on ${record.name}` : 'Image removed from the project since',
            },
            record?.thumb ? h('img', { src: urls.url(record.thumb), alt: record.name, width: 96, height: 96 }) : h('span', { class: 'no-thumb' }, '?'),
          ),
          h('span', {}, h('strong', {}, predicted), ` ${confidence}`),
          h('small', {}, `is ${actual}${record ? '' : ' (removed since)'}`),
        );
      }),
      wrong.length > MAX_MISTAKES ? h('li', { class: 'more' }, `+${wrong.length - MAX_MISTAKES} more`) : null,
    );
  }

  /** A misclassified image with the maps of the class predicted and of its true class. */
  async function compare(record, predicted, actual) {
    const report = workspace.state.report;
    const figures = [];
    for (const [label, role] of [[predicted, 'predicted'], [actual, 'true class']]) {
      // The fine map: one image at a time, so its extra backward pass is worth its precision.
      const { explanation } = await workspace.explain(record.blob, { label, fine: true });
      const canvas = h('canvas', { class: 'explained', 'data-label': label, role: 'img', 'aria-label': `Heat map of ${label} on ${record.name}` });
      await drawExplanation(canvas, record.blob, explanation, { opacity: 0.6 });
      figures.push(h('figure', {}, canvas, h('figcaption', {}, `${role}: ${label} (${percent(explanation.score)})`)));
    }
    // Trained again meanwhile: this mistake was the old model's, and the maps are the new one's.
    if (workspace.state.report !== report) return;
    render(comparison, h('h4', {}, `Why “${record.name}” was taken for ${predicted}`), h('div', { class: 'map-pair' }, figures));
    comparison.scrollIntoView?.({ block: 'nearest' });
  }

  workspace.addEventListener('change', draw);
  draw();
  return root;
}

function metric(name, value, note, key) {
  return h('div', { class: 'metric', 'data-metric': key }, h('dt', {}, name), h('dd', {}, h('span', { class: 'value' }, value), h('small', {}, note)));
}

/**
 * `confusion[actual][predicted]` as a table whose cells are shaded by their share of the row;
 * past 100 classes (no matrix in the report) the most frequent confusions as a list.
 */
function confusionMatrix({ labels, confusion, topConfusions }) {
  if (!confusion) {
    return h(
      'div',
      { class: 'confusion', id: 'confusion' },
      h('h4', {}, `Most frequent confusions (of ${labels.length} classes)`),
      topConfusions.length
        ? h('ol', {}, topConfusions.map(({ actual, predicted, count }) => h('li', {}, `${labels[actual]} taken for ${labels[predicted]}: ${count}`)))
        : h('p', {}, 'None: every held-out image was right.'),
    );
  }
  return h(
    'table',
    { class: 'confusion', id: 'confusion' },
    h('caption', {}, 'Confusion matrix (rows: actual class, columns: predicted)'),
    h('thead', {}, h('tr', {}, h('td', {}), labels.map((label) => h('th', { scope: 'col' }, label)))),
    h(
      'tbody',
      {},
      confusion.map((row, actual) => {
        const total = row.reduce((a, b) => a + b, 0) || 1;
        return h(
          'tr',
          {},
          h('th', { scope: 'row' }, labels[actual]),
          row.map((count, predicted) => {
            const share = count / total;
            const hue = actual === predicted ? 150 : 8;
            return h('td', { class: share > 0.55 ? 'dark' : '', style: { backgroundColor: `hsl(${hue} 70% ${96 - share * 56}%)` }, title: `${count} ${labels[actual]} predicted as ${labels[predicted]}` }, String(count));
          }),
        );
      }),
    ),
  );
}
