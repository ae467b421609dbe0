// Live training curves, drawn by uPlot (a ~50 KB charting library served from this site).

import { h } from '../dom.js';

const COLORS = { train: '#2563eb', validation: '#d9480f' };

/** A chart of one metric per epoch, train and validation; `set(history)` redraws it. */
export function metricChart({ title, key, valKey, percent = false }) {
  const uPlot = globalThis.uPlot;
  const element = h('figure', { class: 'chart', 'data-metric': key }, h('figcaption', {}, title));
  const summary = h('p', { class: 'visually-hidden', 'aria-live': 'off' });
  element.append(summary);
  const format = (value) => (value === null || value === undefined ? '—' : percent ? `${(value * 100).toFixed(1)}%` : value.toFixed(3));
  let plot = null;
  let data = [[], [], []];

  function width() {
    return Math.max(240, Math.min(560, element.clientWidth || 320));
  }

  function create() {
    if (!uPlot) {
      element.append(h('p', { class: 'hint' }, 'The chart library did not load; the numbers are in the table below.'));
      return;
    }
    plot = new uPlot(
      {
        width: width(),
        height: 200,
        scales: { x: { time: false }, y: percent ? { range: [0, 1] } : { auto: true } },
        axes: [{ label: 'epoch', incrs: [1, 2, 5, 10, 20, 50, 100, 200] }, { values: (_, ticks) => ticks.map((t) => (percent ? `${Math.round(t * 100)}%` : t.toFixed(2))) }],
        series: [
          { label: 'epoch' },
          { label: 'train', stroke: COLORS.train, width: 2, value: (_, v) => format(v) },
          { label: 'validation', stroke: COLORS.validation, width: 2, dash: [6, 4], value: (_, v) => format(v) },
        ],
        legend: { live: false },
      },
      data,
      element,
    );
    new ResizeObserver(() => plot.setSize({ width: width(), height: 200 })).observe(element);
  }

  return {
    element,
    /** Draws `history` (the engine's epoch reports). */
    set(history) {
      data = [history.map((e) => e.epoch), history.map((e) => e[key]), history.map((e) => e[valKey] ?? null)];
      if (!plot) create();
      plot?.setData(data);
      element.dataset.points = String(history.length);
      const last = history.at(-1);
      summary.textContent = last ? `${title} after epoch ${last.epoch}: train ${format(last[key])}, validation ${format(last[valKey])}` : '';
    },
  };
}
