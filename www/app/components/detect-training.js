// Training the detector: epochs, input size, mirroring and fine-tuning, Train and Stop, a progress bar with the time
// left, and live curves: the loss and its parts per epoch, and the held-out mAP per epoch when
// the engine scores one.

import { h, duration, percent } from '../dom.js';
import { guarded } from './notices.js';
import { stoppableTraining } from './training-run.js';
import { curvesChart } from './charts.js';
import { DETECT_DEFAULTS, INPUT_SIZES } from '../detect-workspace.js';

const LOSS_PARTS = [
  ['loss', 'total'],
  ['classLoss', 'classes'],
  ['boxLoss', 'boxes'],
  ['centrednessLoss', 'centredness'],
];

/** One sentence on what the last training did. */
export function detectionSummary(report) {
  const { plan, history, stopped } = report.training;
  const last = history.at(-1);
  const measured = report.evaluation ? `; on ${report.heldOut} held-out images mAP50 ${percent(report.evaluation.mAP50)}` : '; no image was held out, so nothing was measured';
  return `Trained in ${duration(report.seconds)}${stopped ? ' (stopped)' : ''}: ${history.length} of ${plan.epochs} epochs at ${plan.inputSize} px, final loss ${last ? last.loss.toFixed(3) : '—'}${measured}.`;
}

export function detectTrainingPanel(workspace, notify) {
  const epochs = h('input', { id: 'option-epochs', type: 'number', min: 1, max: 500, step: 1, required: true, 'aria-describedby': 'option-epochs-help' });
  const inputSize = h('select', { id: 'option-inputSize', 'aria-describedby': 'option-inputSize-help' }, INPUT_SIZES.map((size) => h('option', { value: size }, `${size} px`)));
  const flip = h('input', { id: 'option-flip', type: 'checkbox', 'aria-describedby': 'option-flip-help' });
  const fineTuneBlocks = h('input', { id: 'option-fineTuneBlocks', type: 'number', min: 0, max: 16, step: 1, required: true, 'aria-describedby': 'option-fineTuneBlocks-help' });
  const fields = h(
    'div',
    { class: 'fields' },
    h('div', { class: 'field' }, h('label', { for: 'option-epochs' }, 'Epochs'), epochs, h('small', { id: 'option-epochs-help' }, 'Passes over the training images. Every step runs the whole network, backbone included, on a batch of them (mirrored at random when asked): time grows with epochs × images, memory is one batch’s.')),
    h('div', { class: 'field' }, h('label', { for: 'option-inputSize' }, 'Input size'), inputSize, h('small', { id: 'option-inputSize-help' }, 'The square the images are fitted into. Larger finds smaller objects, and is slower.')),
    h('div', { class: 'field check' }, h('label', { for: 'option-flip' }, flip, ' Mirror images (flip)'), h('small', { id: 'option-flip-help' }, 'Mirrors training images left to right at random, so the detector sees more variety. Leave it off where left and right matter (text, signs).')),
    h('div', { class: 'field' }, h('label', { for: 'option-fineTuneBlocks' }, 'Backbone blocks to fine-tune'), fineTuneBlocks, h('small', { id: 'option-fineTuneBlocks-help' }, 'The last blocks of the backbone (of 16) trained with the detector, at a tenth of its learning rate: for images unlike everyday photos. 0 keeps the backbone as it is; each block makes a step slower.')),
  );
  const trainButton = h('button', { type: 'button', class: 'primary', id: 'train' }, 'Train');
  const stopButton = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  const progress = h('progress', { id: 'train-progress', max: 1, value: 0, 'aria-label': 'Training progress' });
  const progressText = h('p', { class: 'progress-text', id: 'train-status', 'aria-live': 'polite' }, 'Not trained yet.');
  const lossChart = curvesChart({ title: 'Loss per epoch', key: 'loss', xLabel: 'epoch' });
  const mapChart = curvesChart({ title: 'Held-out mAP per epoch', key: 'map', xLabel: 'epoch', percentY: true });
  const trainingRun = stoppableTraining(stopButton, progressText, 'Stopping at the next step; the detector so far is kept…');

  function fill(options) {
    epochs.value = options.epochs;
    inputSize.value = String(options.inputSize);
    flip.checked = options.flip;
    fineTuneBlocks.value = options.fineTuneBlocks;
  }

  function readOptions() {
    const value = Number(epochs.value);
    if (!Number.isInteger(value) || value < 1 || value > 500) throw new Error('Epochs must be a whole number between 1 and 500');
    const blocks = Number(fineTuneBlocks.value);
    if (!Number.isInteger(blocks) || blocks < 0 || blocks > 16) throw new Error('Backbone blocks to fine-tune must be a whole number between 0 and 16');
    return { epochs: value, inputSize: Number(inputSize.value), flip: flip.checked, fineTuneBlocks: blocks };
  }

  function showHistory(history) {
    const xs = history.map((e) => e.epoch);
    const last = history.at(-1);
    lossChart.set(
      xs,
      LOSS_PARTS.map(([key, label], i) => ({ label, values: history.map((e) => e[key]), dash: i ? [6, 4] : undefined })),
      last ? `Loss after epoch ${last.epoch}: ${last.loss.toFixed(3)} (classes ${last.classLoss.toFixed(3)}, boxes ${last.boxLoss.toFixed(3)}, centredness ${last.centrednessLoss.toFixed(3)})` : '',
    );
    const scored = history.filter((e) => e.valMAP50 !== null && e.valMAP50 !== undefined);
    const lastScored = scored.at(-1);
    mapChart.set(
      scored.map((e) => e.epoch),
      [
        { label: 'mAP50', values: scored.map((e) => e.valMAP50) },
        { label: 'mAP50-95', values: scored.map((e) => e.valMAP50_95), dash: [6, 4] },
      ],
      lastScored ? `Held-out mAP50 after epoch ${lastScored.epoch}: ${percent(lastScored.valMAP50)}` : '',
    );
  }

  trainButton.addEventListener('click', () =>
    guarded(notify, async () => {
      const options = readOptions();
      const history = [];
      let trainingFrom = null;
      showHistory(history);
      progress.max = 1;
      progress.value = 0;
      progressText.textContent = 'Reading the training images…';
      await trainingRun.start(async (signal) => {
        const report = await workspace.train(options, {
          signal,
          onProgress: (event, elapsedMs) => {
            if (event.type === 'step') {
              trainingFrom ??= { ms: elapsedMs, step: event.step };
              progress.max = event.totalSteps;
              progress.value = event.step;
              // The steps since the first one reported, over the time they took.
              const steps = event.step - trainingFrom.step;
              const left = steps ? ` · about ${duration(((elapsedMs - trainingFrom.ms) / 1000 / steps) * (event.totalSteps - event.step))} left` : '';
              progressText.textContent = `Training · epoch ${event.epoch} of ${options.epochs} · step ${event.step} of ${event.totalSteps}${left}`;
            } else if (event.type === 'epoch') {
              history.push(event);
              showHistory(history);
            }
          },
        });
        progressText.textContent = detectionSummary(report);
        notify(report.evaluation ? `Training finished: mAP50 ${percent(report.evaluation.mAP50)} on the held-out images` : 'Training finished');
      });
    }),
  );

  const root = h(
    'section',
    { class: 'panel', id: 'training', 'aria-labelledby': 'training-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'training-title' }, '2 · Train'), h('div', { class: 'actions' }, trainButton, stopButton)),
    h('details', { class: 'advanced' }, h('summary', {}, 'Options'), fields, h('button', { type: 'button', class: 'link', onclick: () => fill(DETECT_DEFAULTS) }, 'Reset to defaults')),
    progress,
    progressText,
    h('div', { class: 'charts' }, lossChart.element, mapChart.element),
  );

  fill(workspace.state.options);
  let syncedOptions = workspace.state.options;
  let shownReport = null;
  workspace.addEventListener('change', () => {
    const training = trainingRun.running();
    trainButton.disabled = Boolean(workspace.activity) || !workspace.graft;
    if (!training && workspace.state.options !== syncedOptions) {
      syncedOptions = workspace.state.options;
      fill(syncedOptions);
    }
    const report = workspace.state.report;
    if (!training && report !== shownReport) {
      shownReport = report;
      showHistory(report?.training.history ?? []);
      progress.value = report ? progress.max : 0;
      progressText.textContent = report ? `Last training: ${detectionSummary(report)}` : 'Not trained yet.';
    }
  });
  return root;
}
