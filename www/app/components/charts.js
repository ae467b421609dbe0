// Training charts, drawn by uPlot (a ~50 KB charting library served from this site): the head's
// regularisation path and the fine-tuning curves. Each figure carries `data-points` (how many
// points it shows) and a visually hidden sentence with the latest values.

import { h } from '../dom.js';

const COLORS = { train: '#2563eb', validation: '#d9480f' };
const HEIGHT = 200;

const formatValue = (value, percent) => (value === null || value === undefined ? '—' : percent ? `${(value * 100).toFixed(1)}%` : value.toFixed(3));
/** An L2 strength for an axis or a sentence: 10, 0.32, 1e-3. */
export const formatStrength = (value) => (value >= 0.01 ? String(Number(value.toPrecision(2))) : value.toExponential(0));

/** A figure with a caption and a uPlot chart created on the first `draw(data)`. */
function figure({ title, key, options: initialOptions }) {
  const uPlot = globalThis.uPlot;
  // Hidden until there is something to draw.
  const element = h('figure', { class: 'chart', 'data-metric': key, hidden: true }, h('figcaption', {}, title));
  const summary = h('p', { class: 'visually-hidden', 'aria-live': 'off' });
  element.append(summary);
  let plot = null;
  let options = initialOptions;
  const width = () => Math.max(240, Math.min(560, element.clientWidth || 320));
  new ResizeObserver(() => plot?.setSize({ width: width(), height: HEIGHT })).observe(element);

  function create(data) {
    if (!uPlot) {
      element.append(h('p', { class: 'hint' }, 'The chart library did not load; the numbers are in the results.'));
      return;
    }
    plot = new uPlot({ width: width(), height: HEIGHT, legend: { live: false }, ...options }, data, element);
  }

  return {
    element,
    /**
     * Redraws with uPlot data (`[xs, ...ys]`); `points` and `text` describe it. New `options`
     * (other series, say) make the plot again.
     */
    draw(data, { points, text, options: newOptions }) {
      element.hidden = points === 0;
      if (newOptions) {
        options = newOptions;
        plot?.destroy();
        plot = null;
      }
      if (!plot && !element.querySelector('.hint')) create(data);
      plot?.setData(data);
      element.dataset.points = String(points);
      summary.textContent = text;
    },
  };
}

/** Colours for curves and classes, told apart also by dash where it matters. */
export const PALETTE = ['#2563eb', '#d9480f', '#2f9e44', '#9c36b5', '#c2255c', '#0c8599', '#e67700', '#5f3dc4', '#495057', '#a61e4d'];

/**
 * Named curves over one x axis (epochs, recall): `set(xs, curves, text)`, `curves` being
 * `[{ label, values, dash? }]` (null where a curve has no value). The plot is made again when
 * the curves' names change.
 */
export function curvesChart({ title, key, xLabel, percentX = false, percentY = false }) {
  const format = (value) => formatValue(value, percentY);
  let names = '';
  const chart = figure({ title, key, options: null });
  const optionsFor = (curves) => ({
    scales: { x: { time: false, ...(percentX ? { range: [0, 1] } : {}) }, y: percentY ? { range: [0, 1] } : { auto: true } },
    axes: [
      { label: xLabel, values: (_, ticks) => ticks.map((t) => (percentX ? `${Math.round(t * 100)}%` : String(t))) },
      { values: (_, ticks) => ticks.map((t) => (percentY ? `${Math.round(t * 100)}%` : t.toFixed(2))) },
    ],
    series: [{ label: xLabel }, ...curves.map((curve, i) => ({ label: curve.label, stroke: PALETTE[i % PALETTE.length], width: 2, dash: curve.dash, points: { show: curve.values.length < 30 }, value: (_, v) => format(v) }))],
  });
  return {
    element: chart.element,
    set(xs, curves, text) {
      const now = curves.map((c) => c.label).join('\n');
      const options = now !== names ? optionsFor(curves) : undefined;
      names = now;
      chart.draw([xs, ...curves.map((c) => c.values)], { points: xs.length, text, options });
    },
  };
}

/** A chart of one metric per epoch, train and validation; `set(history)` redraws it. */
export function metricChart({ title, key, valKey, percent = false }) {
  const format = (value) => formatValue(value, percent);
  const chart = figure({
    title,
    key,
    options: {
      scales: { x: { time: false }, y: percent ? { range: [0, 1] } : { auto: true } },
      axes: [{ label: 'epoch', incrs: [1, 2, 5, 10, 20, 50, 100, 200] }, { values: (_, ticks) => ticks.map((t) => (percent ? `${Math.round(t * 100)}%` : t.toFixed(2))) }],
      series: [
        { label: 'epoch' },
        { label: 'train', stroke: COLORS.train, width: 2, value: (_, v) => format(v) },
        { label: 'validation', stroke: COLORS.validation, width: 2, dash: [6, 4], value: (_, v) => format(v) },
      ],
    },
  });
  return {
    element: chart.element,
    /** Draws `history` (epoch reports: `{ epoch, [key], [valKey] }`). */
    set(history) {
      const last = history.at(-1);
      chart.draw([history.map((e) => e.epoch), history.map((e) => e[key] ?? null), history.map((e) => e[valKey] ?? null)], {
        points: history.length,
        text: last ? `${title} after epoch ${last.epoch}: train ${format(last[key])}, validation ${format(last[valKey])}` : '',
      });
    },
  };
}

/**
 * The head's regularisation path: cross-validated accuracy (left axis) and loss (right axis)
 * for each L2 strength tried, strongest on the left, as the search goes.
 */
export function pathChart() {
  const chart = figure({
    title: 'Choosing the head’s regularisation (cross-validation)',
    key: 'cv',
    options: {
      scales: { x: { time: false, distr: 3, dir: -1 }, accuracy: { range: [0, 1] }, loss: { auto: true } },
      axes: [
        { label: 'L2 strength (strongest first)', values: (_, ticks) => ticks.map((t) => (t === null ? '' : formatStrength(t))) },
        { scale: 'accuracy', values: (_, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
        { scale: 'loss', side: 1, grid: { show: false }, values: (_, ticks) => ticks.map((t) => t.toFixed(2)) },
      ],
      series: [
        { label: 'L2', value: (_, v) => (v === null ? '—' : formatStrength(v)) },
        { label: 'CV accuracy', scale: 'accuracy', stroke: COLORS.train, width: 2, points: { show: true }, value: (_, v) => formatValue(v, true) },
        { label: 'CV loss', scale: 'loss', stroke: COLORS.validation, width: 2, dash: [6, 4], points: { show: true }, value: (_, v) => formatValue(v, false) },
      ],
    },
  });
  return {
    element: chart.element,
    /** Draws the trials (`{ l2, cvLoss, cvAccuracy }`, in any order); `picked` marks the chosen strength. */
    set(trials, { picked } = {}) {
      // uPlot wants x ascending; the reversed scale puts the strongest penalty on the left.
      const sorted = [...trials].sort((a, b) => a.l2 - b.l2);
      const last = trials.at(-1);
      const text = picked !== undefined
        ? `Picked L2 ${formatStrength(picked)} after trying ${trials.length} strengths`
        : last ? `L2 ${formatStrength(last.l2)}: cross-validated accuracy ${formatValue(last.cvAccuracy, true)}, loss ${formatValue(last.cvLoss, false)}` : '';
      chart.draw([sorted.map((t) => t.l2), sorted.map((t) => t.cvAccuracy), sorted.map((t) => t.cvLoss)], { points: trials.length, text });
    },
  };
}
