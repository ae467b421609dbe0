// Training: options under an "advanced" disclosure, Train and Stop, a progress bar with epoch
// and time left, and live loss and accuracy curves.

import { h, duration, percent } from '../dom.js';
import { guarded } from './notices.js';
import { metricChart } from './charts.js';

const FIELDS = [
  { key: 'epochs', label: 'Epochs', min: 1, max: 500, step: 1, help: 'Passes over your images.' },
  { key: 'batchSize', label: 'Batch size', min: 1, max: 256, step: 1, help: 'Images per training step.' },
  { key: 'learningRate', label: 'Learning rate', min: 0.00001, max: 1, step: 'any', help: 'Step size of the optimiser (Adam).' },
  { key: 'validationSplit', label: 'Validation split', min: 0.05, max: 0.5, step: 0.05, help: 'Share of each class held out to measure accuracy.' },
  { key: 'fineTune', label: 'Fine-tune the backbone', type: 'checkbox', help: 'After the new head, also train the pretrained network’s last blocks on your images, with augmentation. Slower; often more accurate.' },
  { key: 'fineTuneBlocks', label: 'Blocks to fine-tune', min: 1, max: 16, step: 1, help: 'The last blocks of the backbone (of 16) trained at a tenth of the learning rate.' },
  { key: 'fineTuneEpochs', label: 'Fine-tuning epochs', min: 0, max: 100, step: 1, help: '0 lets Graft pick from the number of images; it stops early when validation stops improving.' },
  { key: 'flip', label: 'Mirror images while fine-tuning', type: 'checkbox', help: 'Off where left and right matter, as on X-rays.' },
];

/** Phase 1's epochs, then phase 2's, numbered on one axis. */
function combinedHistory(report) {
  const tuned = report.fineTune?.history ?? [];
  return [...report.history, ...tuned.map((e, i) => ({ ...e, epoch: report.history.length + i + 1 }))];
}

const epochs = (n) => `${n} epoch${n === 1 ? '' : 's'}`;

/** One sentence on what the last training did and kept. */
function summary(report) {
  const head = `Trained in ${duration(report.seconds)}: the head for ${epochs(report.history.length)} (best epoch ${report.bestEpoch})`;
  const tune = report.fineTune;
  if (!tune) return `${head}.`;
  const how = tune.cancelled ? ' (stopped)' : tune.stoppedEarly ? ' (stopped early: validation stopped improving)' : '';
  const kept = tune.bestEpoch > 0 ? `keeping epoch ${tune.bestEpoch}` : 'but none beat the head alone, which was kept';
  return `${head}, then the last ${tune.plan.blocks} backbone blocks fine-tuned for ${epochs(tune.history.length)}${how}, ${kept}.`;
}

export function trainingPanel(workspace, notify) {
  const inputs = {};
  const fields = FIELDS.map(({ key, label, type = 'number', min, max, step, help }) => {
    const id = `option-${key}`;
    inputs[key] = h('input', { id, type, min, max, step, required: type === 'number', 'aria-describedby': `${id}-help` });
    if (type === 'checkbox') return h('div', { class: 'field check' }, h('label', { for: id }, inputs[key], ` ${label}`), h('small', { id: `${id}-help` }, help));
    return h('div', { class: 'field' }, h('label', { for: id }, label), inputs[key], h('small', { id: `${id}-help` }, help));
  });
  const reset = h('button', { type: 'button', class: 'link', onclick: () => fill(workspace.defaultOptions()) }, 'Reset to defaults');
  const trainButton = h('button', { type: 'button', class: 'primary', id: 'train' }, 'Train');
  const stopButton = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  const progress = h('progress', { id: 'train-progress', max: 1, value: 0, 'aria-label': 'Training progress' });
  const progressText = h('p', { class: 'progress-text', id: 'train-status', 'aria-live': 'polite' }, 'Not trained yet.');
  const lossChart = metricChart({ title: 'Loss', key: 'loss', valKey: 'valLoss' });
  const accuracyChart = metricChart({ title: 'Accuracy', key: 'accuracy', valKey: 'valAccuracy', percent: true });
  let controller = null;

  function fill(options) {
    for (const { key, type } of FIELDS) {
      if (type === 'checkbox') inputs[key].checked = Boolean(options[key]);
      else inputs[key].value = options[key];
    }
  }

  function readOptions() {
    const options = {};
    for (const { key, label, type, min, max } of FIELDS) {
      if (type === 'checkbox') {
        options[key] = inputs[key].checked;
        continue;
      }
      const value = Number(inputs[key].value);
      if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${label} must be between ${min} and ${max}`);
      options[key] = ['epochs', 'batchSize', 'fineTuneBlocks', 'fineTuneEpochs'].includes(key) ? Math.round(value) : value;
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
      let fineTuneStarted = null;
      showHistory(history);
      progress.max = options.epochs;
      progress.value = 0;
      progressText.textContent = 'Starting…';
      try {
        const report = await workspace.train(options, {
          signal: controller.signal,
          onEpoch: (epoch, elapsedMs) => {
            if (epoch.phase === 'fineTune') {
              fineTuneStarted ??= elapsedMs;
              if (epoch.epoch === 0) return; // the head alone, measured before fine-tuning
              history.push({ ...epoch, epoch: history.length + 1 });
              showHistory(history);
              return;
            }
            history.push(epoch);
            showHistory(history);
            progress.max = epoch.totalSteps;
            progress.value = epoch.step;
            const perEpoch = elapsedMs / 1000 / epoch.epoch;
            const next = options.fineTune ? ' (then fine-tuning)' : '';
            progressText.textContent = `Epoch ${epoch.epoch} of ${options.epochs} · step ${epoch.step} of ${epoch.totalSteps} · validation accuracy ${percent(epoch.valAccuracy)} · about ${duration(perEpoch * (options.epochs - epoch.epoch))} left${next}`;
          },
          onProgress: (step, elapsedMs) => {
            fineTuneStarted ??= elapsedMs;
            progress.max = step.totalSteps;
            progress.value = step.step;
            const perStep = (elapsedMs - fineTuneStarted) / 1000 / step.step;
            progressText.textContent = `Fine-tuning the backbone · epoch ${step.epoch} of ${step.epochs} · step ${step.step} of ${step.totalSteps} · at most ${duration(perStep * (step.totalSteps - step.step))} left`;
          },
        });
        progressText.textContent = summary(report);
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
      showHistory(combinedHistory(shownReport));
      progress.max = shownReport.history.length;
      progress.value = shownReport.history.length;
      if (!controller) progressText.textContent = `Last training: ${summary(shownReport)}`;
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
