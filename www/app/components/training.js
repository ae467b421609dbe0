// Training: options under an "advanced" disclosure, Train and Stop, a progress bar with epoch
// and time left, and live loss and accuracy curves.

import { h, duration, percent } from '../dom.js';
import { DEFAULT_OPTIONS } from '../workspace.js';
import { guarded } from './notices.js';
import { metricChart } from './charts.js';

const FIELDS = [
  { key: 'epochs', label: 'Epochs', min: 1, max: 500, step: 1, help: 'Passes over your images.' },
  { key: 'batchSize', label: 'Batch size', min: 1, max: 256, step: 1, help: 'Images per training step.' },
  { key: 'learningRate', label: 'Learning rate', min: 0.00001, max: 1, step: 'any', help: 'Step size of the optimiser (Adam).' },
  { key: 'validationSplit', label: 'Validation split', min: 0.05, max: 0.5, step: 0.05, help: 'Share of each class held out to measure accuracy.' },
];

export function trainingPanel(workspace, notify) {
  const inputs = {};
  const fields = FIELDS.map(({ key, label, min, max, step, help }) => {
    const id = `option-${key}`;
    inputs[key] = h('input', { id, type: 'number', min, max, step, required: true, 'aria-describedby': `${id}-help` });
    return h('div', { class: 'field' }, h('label', { for: id }, label), inputs[key], h('small', { id: `${id}-help` }, help));
  });
  const reset = h('button', { type: 'button', class: 'link', onclick: () => fill(DEFAULT_OPTIONS) }, 'Reset to defaults');
  const trainButton = h('button', { type: 'button', class: 'primary', id: 'train' }, 'Train');
  const stopButton = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  const progress = h('progress', { id: 'train-progress', max: 1, value: 0, 'aria-label': 'Training progress' });
  const progressText = h('p', { class: 'progress-text', id: 'train-status', 'aria-live': 'polite' }, 'Not trained yet.');
  const lossChart = metricChart({ title: 'Loss', key: 'loss', valKey: 'valLoss' });
  const accuracyChart = metricChart({ title: 'Accuracy', key: 'accuracy', valKey: 'valAccuracy', percent: true });
  let controller = null;

  function fill(options) {
    for (const { key } of FIELDS) inputs[key].value = options[key];
  }

  function readOptions() {
    const options = {};
    for (const { key, label, min, max } of FIELDS) {
      const value = Number(inputs[key].value);
      if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${label} must be between ${min} and ${max}`);
      options[key] = key === 'epochs' || key === 'batchSize' ? Math.round(value) : value;
    }
    return options;
  }

  function showHistory(history) {
    lossChart.set(history);
    accuracyChart.set(history);
  }

  trainButton.addEventListener('click', () =>
    guarded(notify, async () => {
      const options = readOptions();
      controller = new AbortController();
      stopButton.disabled = false;
      const history = [];
      showHistory(history);
      progress.max = options.epochs;
      progress.value = 0;
      progressText.textContent = 'Starting…';
      try {
        const report = await workspace.train(options, {
          signal: controller.signal,
          onEpoch: (epoch, elapsedMs) => {
            history.push(epoch);
            showHistory(history);
            progress.value = epoch.epoch;
            const perEpoch = elapsedMs / 1000 / epoch.epoch;
            const steps = epoch.totalSteps ? ` · step ${epoch.step} of ${epoch.totalSteps}` : '';
            progressText.textContent = `Epoch ${epoch.epoch} of ${options.epochs}${steps} · validation accuracy ${percent(epoch.valAccuracy)} · about ${duration(perEpoch * (options.epochs - epoch.epoch))} left`;
          },
        });
        progressText.textContent = `Trained ${report.history.length} epochs in ${duration(report.seconds)}${report.stoppedEarly ? ' (stopped early)' : ''}; the best epoch (${report.bestEpoch}) was kept.`;
        notify(`Training finished: validation accuracy ${percent(report.validation?.accuracy ?? null)}`);
      } finally {
        controller = null;
        stopButton.disabled = true;
      }
    }),
  );
  stopButton.addEventListener('click', () => {
    controller?.abort();
    stopButton.disabled = true;
    progressText.textContent = 'Stopping after this epoch…';
  });

  const root = h(
    'section',
    { class: 'panel', id: 'training', 'aria-labelledby': 'training-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'training-title' }, '2 · Train'), h('div', { class: 'actions' }, trainButton, stopButton)),
    h('details', { class: 'advanced' }, h('summary', {}, 'Advanced options'), h('div', { class: 'fields' }, fields), reset),
    progress,
    progressText,
    h('div', { class: 'charts' }, lossChart.element, accuracyChart.element),
  );

  fill(workspace.state.options);
  let shownReport = null;
  workspace.addEventListener('change', () => {
    const training = workspace.activity?.label === 'Training';
    trainButton.disabled = Boolean(workspace.activity) || !workspace.graft;
    if (!training && workspace.state.report && workspace.state.report !== shownReport) {
      shownReport = workspace.state.report;
      fill(workspace.state.options);
      showHistory(shownReport.history);
      progress.max = shownReport.history.length;
      progress.value = shownReport.history.length;
      if (!controller) progressText.textContent = `Last training: ${shownReport.history.length} epochs, best epoch ${shownReport.bestEpoch}, validation accuracy ${percent(shownReport.validation?.accuracy ?? null)}.`;
    }
    if (!workspace.state.report && !training && shownReport) {
      shownReport = null;
      showHistory([]);
      progress.value = 0;
      progressText.textContent = 'Not trained yet.';
    }
  });
  return root;
}
