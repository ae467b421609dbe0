// Training: options under an "advanced" disclosure, Train and Stop, a progress bar with what
// the engine is doing (and, while fine-tuning, the time left), the head's regularisation path
// as it is searched and, when the backbone is fine-tuned, its loss and accuracy per epoch.

import { h, duration, percent } from '../dom.js';
import { guarded } from './notices.js';
import { stoppableTraining } from './training-run.js';
import { metricChart, pathChart, formatStrength } from './charts.js';

/** `fineTune: true`: only used (and only editable) when fine-tuning is on. */
const FIELDS = [
  { key: 'validationSplit', label: 'Validation split', min: 0.05, max: 0.5, step: 0.05, help: 'Share of each class held out to measure accuracy. The head is solved on the rest, its regularisation picked by cross-validation.' },
  { key: 'fineTune', label: 'Fine-tune the backbone', type: 'checkbox', help: 'After solving the new head, also train the pretrained network’s last blocks on your images. Slower; sometimes more accurate. Kept only if it beats the head alone.' },
  { key: 'fineTuneBlocks', label: 'Blocks to fine-tune', min: 1, max: 16, step: 1, integer: true, fineTune: true, help: 'The last blocks of the backbone (of 16), trained at a tenth of the head’s learning rate.' },
  { key: 'fineTuneEpochs', label: 'Fine-tuning epochs', min: 0, max: 1000, step: 1, integer: true, optional: true, fineTune: true, help: 'Empty lets Graft pick from the number of images; it stops early when validation stops improving.' },
  { key: 'flip', label: 'Mirror images while fine-tuning', type: 'checkbox', fineTune: true, help: 'Mirrors images at random while fine-tuning. Leave it off where left and right matter, as on X-rays.' },
];

const epochs = (n) => `${n} epoch${n === 1 ? '' : 's'}`;

/** How the head's penalty was set, in words. */
function penalty(head) {
  const l2 = `L2 ${formatStrength(head.l2)}`;
  if (head.l2Source === 'crossValidation') return `${l2} picked by ${head.folds}-fold cross-validation`;
  if (head.l2Source === 'given') return `${l2}, as given`;
  return `${l2} (too few images to cross-validate)`;
}

/** One sentence on what the last training did and kept. */
export function summary(report) {
  const stopped = report.stopped ? ' (stopped)' : '';
  const headAccuracy = report.head.valAccuracy === null || report.head.valAccuracy === undefined ? '' : `, validation accuracy ${percent(report.head.valAccuracy)}`;
  const head = `Trained in ${duration(report.seconds)}${stopped}: the head solved with ${penalty(report.head)}${headAccuracy}`;
  const tune = report.fineTune;
  if (!tune) return `${head}.`;
  const how = !report.stopped && tune.stoppedEarly ? ' (stopped early: validation stopped improving)' : '';
  const kept = tune.bestEpoch > 0
    ? `keeping epoch ${tune.bestEpoch}${report.validation ? ` (validation accuracy ${percent(report.validation.accuracy)})` : ''}`
    : 'but none beat the head alone, which was kept';
  return `${head}; then the last ${tune.plan.blocks} backbone blocks fine-tuned for ${epochs(tune.history.length)}${how}, ${kept}.`;
}

/** The fine-tuning curves of a report: epoch 0 is the head alone (validation only). */
function fineTuneHistory(tune) {
  if (!tune) return [];
  return [...(tune.baseline ? [{ ...tune.baseline, epoch: 0 }] : []), ...tune.history];
}

export function trainingPanel(workspace, notify) {
  const inputs = {};
  const fields = FIELDS.map(({ key, label, type = 'number', min, max, step, optional, help }) => {
    const id = `option-${key}`;
    inputs[key] = h('input', { id, type, min, max, step, required: type === 'number' && !optional, placeholder: optional ? 'auto' : undefined, 'aria-describedby': `${id}-help` });
    if (type === 'checkbox') return h('div', { class: 'field check' }, h('label', { for: id }, inputs[key], ` ${label}`), h('small', { id: `${id}-help` }, help));
    return h('div', { class: 'field' }, h('label', { for: id }, label), inputs[key], h('small', { id: `${id}-help` }, help));
  });
  const reset = h('button', { type: 'button', class: 'link', onclick: () => fill(workspace.defaultOptions()) }, 'Reset to defaults');
  const trainButton = h('button', { type: 'button', class: 'primary', id: 'train' }, 'Train');
  const stopButton = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  const progress = h('progress', { id: 'train-progress', max: 1, value: 0, 'aria-label': 'Training progress' });
  const progressText = h('p', { class: 'progress-text', id: 'train-status', 'aria-live': 'polite' }, 'Not trained yet.');
  const cvChart = pathChart();
  const lossChart = metricChart({ title: 'Loss', key: 'loss', valKey: 'valLoss' });
  const accuracyChart = metricChart({ title: 'Accuracy', key: 'accuracy', valKey: 'valAccuracy', percent: true });
  const fineTuneCharts = h(
    'div',
    { class: 'chart-group', id: 'fine-tune-charts', hidden: true },
    h('h3', {}, 'Fine-tuning the backbone (epoch 0: the head alone)'),
    h('div', { class: 'charts' }, lossChart.element, accuracyChart.element),
  );
  const trainingRun = stoppableTraining(stopButton, progressText, 'Stopping at the next step; the best model so far is kept…');
  /** The saved options last put in the form: a new object means they changed (a reload, say). */
  let syncedOptions = workspace.state.options;

  function syncFineTune() {
    for (const { key, fineTune } of FIELDS) if (fineTune) inputs[key].disabled = !inputs.fineTune.checked;
  }
  inputs.fineTune.addEventListener('change', syncFineTune);

  function fill(options) {
    for (const { key, type, optional } of FIELDS) {
      if (type === 'checkbox') inputs[key].checked = Boolean(options[key]);
      else inputs[key].value = optional && !options[key] ? '' : options[key];
    }
    syncFineTune();
  }

  /** The form's options; fine-tuning's are checked only when fine-tuning is on. */
  function readOptions() {
    const options = { ...workspace.state.options };
    for (const { key, label, type, min, max, integer, optional, fineTune } of FIELDS) {
      if (type === 'checkbox') {
        options[key] = inputs[key].checked;
        continue;
      }
      if (fineTune && !inputs.fineTune.checked) continue;
      const text = inputs[key].value.trim();
      const value = optional && text === '' ? 0 : Number(text);
      if (text === '' && !optional) throw new Error(`${label} needs a value between ${min} and ${max}`);
      if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
        throw new Error(`${label} must be ${integer ? 'a whole number ' : ''}between ${min} and ${max}${optional ? ', or empty' : ''}`);
      }
      options[key] = value;
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
      const trials = [];
      const history = [];
      let fineTuneStarted = null;
      cvChart.set(trials);
      showHistory(history);
      fineTuneCharts.hidden = !options.fineTune;
      progress.max = 1;
      progress.value = 0;
      progressText.textContent = 'Starting…';
      await trainingRun.start(async (signal) => {
        const report = await workspace.train(options, {
          signal,
          onProgress: (event, elapsedMs) => {
            switch (event.status) {
              case 'search':
                trials.push(event);
                cvChart.set(trials);
                progress.max = event.of;
                progress.value = event.index;
                progressText.textContent = `Choosing the head’s regularisation · ${event.index} of ${event.of}`;
                break;
              case 'head':
                cvChart.set(event.search, { picked: event.l2 });
                progress.max = 1;
                progress.value = 1;
                progressText.textContent = `Head solved: ${penalty(event)}${event.valAccuracy == null ? '' : `, validation accuracy ${percent(event.valAccuracy)}`}${options.fineTune ? ' · fine-tuning the backbone next…' : ''}`;
                break;
              case 'baseline':
                fineTuneStarted ??= elapsedMs;
                history.push({ ...event, epoch: 0 });
                showHistory(history);
                break;
              case 'step': {
                fineTuneStarted ??= elapsedMs;
                progress.max = event.totalSteps;
                progress.value = event.step;
                const perStep = (elapsedMs - fineTuneStarted) / 1000 / event.step;
                progressText.textContent = `Fine-tuning the backbone · epoch ${event.epoch} of ${event.epochs} · step ${event.step} of ${event.totalSteps} · about ${duration(perStep * (event.totalSteps - event.step))} left`;
                break;
              }
              case 'epoch':
                history.push(event);
                showHistory(history);
                break;
              default:
                break;
            }
          },
        });
        progressText.textContent = summary(report);
        notify(`Training finished: validation accuracy ${percent(report.validation?.accuracy ?? null)}`);
      });
    }),
  );

  const root = h(
    'section',
    { class: 'panel', id: 'training', 'aria-labelledby': 'training-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'training-title' }, '2 · Train'), h('div', { class: 'actions' }, trainButton, stopButton)),
    h('details', { class: 'advanced' }, h('summary', {}, 'Advanced options'), h('div', { class: 'fields' }, fields), reset),
    progress,
    progressText,
    h('div', { class: 'charts' }, cvChart.element),
    fineTuneCharts,
  );

  fill(workspace.state.options);
  let shownReport = null;
  workspace.addEventListener('change', () => {
    const training = workspace.activity?.label === 'Training';
    trainButton.disabled = Boolean(workspace.activity) || !workspace.graft;
    if (!training && !trainingRun.running() && workspace.state.options !== syncedOptions) {
      syncedOptions = workspace.state.options;
      fill(syncedOptions);
    }
    if (!training && workspace.state.report && workspace.state.report !== shownReport) {
      shownReport = workspace.state.report;
      cvChart.set(shownReport.head.search, { picked: shownReport.head.l2 });
      showHistory(fineTuneHistory(shownReport.fineTune));
      fineTuneCharts.hidden = !shownReport.fineTune;
      progress.max = 1;
      progress.value = 1;
      if (!trainingRun.running()) progressText.textContent = `Last training: ${summary(shownReport)}`;
    }
    if (!workspace.state.report && !training && shownReport) {
      shownReport = null;
      cvChart.set([]);
      showHistory([]);
      fineTuneCharts.hidden = true;
      progress.value = 0;
      progressText.textContent = 'Not trained yet.';
    }
  });
  return root;
}
