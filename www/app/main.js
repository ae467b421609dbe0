// Graft's web app: wires the workspace (engine + storage) to the page's components.
// The page's <body data-preset> picks the project: the general app, the chest X-ray demo or
// the object detector (a project of its own, with its own panels).

import { h } from './dom.js';
import { openStore } from './store.js';
import { Workspace } from './workspace.js';
import { holdProject } from './one-tab.js';
import { noticesArea } from './components/notices.js';
import { statusBar } from './components/status.js';
import { classesPanel } from './components/classes.js';
import { trainingPanel } from './components/training.js';
import { resultsPanel } from './components/results.js';
import { tryItPanel } from './components/tryit.js';
import { keepPanel } from './components/keep.js';
import { DetectWorkspace } from './detect-workspace.js';
import { annotatePanel } from './components/detect-annotate.js';
import { detectTrainingPanel } from './components/detect-training.js';
import { detectResultsPanel } from './components/detect-results.js';
import { detectTryItPanel } from './components/detect-tryit.js';

const PRESETS = {
  general: { id: 'my-project', classes: ['Class 1', 'Class 2'] },
  // Left and right carry meaning on an X-ray (the heart is on the left): no flips, whatever
  // the app's default (also off today).
  'chest-xray': { id: 'chest-xray', classes: ['NORMAL', 'PNEUMONIA'], positive: 'PNEUMONIA', grayscale: true, filename: 'chest-xray-model.safetensors', options: { flip: false } },
  detect: { id: 'detect-project', task: 'detect', classes: ['Object 1'], filename: 'graft-detector.safetensors' },
};

/** The panels of a project, in the page's order. */
function panels(workspace, notify, preset) {
  if (preset.task === 'detect') {
    return [annotatePanel(workspace, notify), detectTrainingPanel(workspace, notify), detectResultsPanel(workspace), detectTryItPanel(workspace, notify), keepPanel(workspace, notify, { filename: preset.filename })];
  }
  return [
    classesPanel(workspace, notify),
    trainingPanel(workspace, notify),
    resultsPanel(workspace, { positive: preset.positive, notify }),
    tryItPanel(workspace, notify, { grayscale: preset.grayscale }),
    keepPanel(workspace, notify, { filename: preset.filename }),
  ];
}

async function main() {
  const mount = document.getElementById('app');
  const preset = PRESETS[document.body.dataset.preset] ?? PRESETS.general;
  const backend = ['auto', 'webgpu', 'cpu'].find((b) => b === new URL(location.href).searchParams.get('backend')) ?? 'auto';
  const { element: notices, notify } = noticesArea();

  let store;
  try {
    store = await openStore();
  } catch (error) {
    mount.replaceChildren(h('p', { class: 'notice error', role: 'alert' }, error.message));
    return;
  }
  const workspace = preset.task === 'detect' ? new DetectWorkspace(store, preset) : new Workspace(store, preset);
  workspace.addEventListener('notice', ({ detail }) => notify(detail.message, { kind: detail.kind }));
  await holdProject(preset.id, {
    onBusy: () =>
      new Promise((resolve) => {
        const useHere = h('button', { type: 'button', id: 'use-here', onclick: resolve }, 'Use it here');
        mount.replaceChildren(
          h('div', { class: 'notice warning', id: 'open-elsewhere', role: 'alert' }, h('span', {}, 'This project is open in another tab. Two tabs saving it would overwrite each other’s work: use it there, or here (the other tab then stops).'), useHere),
        );
      }),
    onTakenOver: () => {
      workspace.stop();
      notify('This project was opened in another tab, so this one stopped (nothing is lost: the other tab has it). Reload to use it here.', { kind: 'error' });
    },
  });
  const status = statusBar(workspace, { backend });
  mount.replaceChildren(status.element, notices, ...panels(workspace, notify, preset));
  try {
    const { notices: started } = await workspace.start({ backend, onProgress: (p) => status.loading(p) });
    status.ready();
    for (const message of started) notify(message, { kind: 'warning' });
    document.body.dataset.ready = 'true';
  } catch (error) {
    if (workspace.graft) {
      status.ready();
      notify(error.message, { kind: 'error' });
      document.body.dataset.ready = 'true';
    } else {
      status.failed(error);
    }
  }
  workspace.changed();
}

if ('serviceWorker' in navigator && !new URL(location.href).searchParams.has('no-offline')) {
  navigator.serviceWorker.register(new URL('../../sw.js', import.meta.url), { scope: new URL('../../', import.meta.url).pathname }).catch(() => {});
}
main();
