// Keep and share: download the trained model (the file the CLI reads), import one, see what
// this browser stores, and delete all of it.

import { h } from '../dom.js';
import { guarded } from './notices.js';

export function keepPanel(workspace, notify, { filename = 'graft-model.safetensors' } = {}) {
  const exportButton = h('button', { type: 'button', id: 'export-model' }, 'Download model');
  const importInput = h('input', { type: 'file', accept: '.safetensors,application/octet-stream', id: 'import-model-input', hidden: true, 'aria-label': 'Choose a model file' });
  const importButton = h('button', { type: 'button', id: 'import-model', onclick: () => importInput.click() }, 'Import a model…');
  const deleteButton = h('button', { type: 'button', class: 'danger', id: 'delete-all' }, 'Delete all my data');
  const usage = h('p', { class: 'hint', id: 'storage-usage' });

  exportButton.addEventListener('click', () =>
    guarded(notify, async () => {
      const bytes = await workspace.exportModel();
      const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      const link = h('a', { href: url, download: filename });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    }),
  );
  importInput.addEventListener('change', () => {
    const [file] = importInput.files;
    importInput.value = '';
    if (!file) return;
    guarded(notify, async () => {
      const info = await workspace.importModel(new Uint8Array(await file.arrayBuffer()));
      notify(`Model “${file.name}” loaded: ${info.labels.length} classes (${info.labels.join(', ')}). Try it below.`);
    });
  });
  deleteButton.addEventListener('click', () => {
    if (!confirm('Delete every class, image and model Graft stored in this browser? This cannot be undone.')) return;
    guarded(notify, async () => {
      await workspace.deleteEverything();
      notify('All your data was deleted from this browser.');
    });
  });

  let latest = 0;
  async function showUsage() {
    const call = ++latest;
    const images = workspace.imageCount();
    const stored = `Stored in this browser only: ${workspace.state.classes.length} classes, ${images} images, ${workspace.state.model ? 'a trained model' : 'no model'}`;
    usage.textContent = `${stored}.`;
    const estimate = await workspace.store.usage().catch(() => null);
    // Estimates can resolve out of order: only the latest call writes.
    if (estimate && call === latest) usage.textContent = `${stored} · this site uses ${(estimate.usage / 1e6).toFixed(1)} MB of this browser’s storage (images, model and the cached engine).`;
  }

  let timer = null;
  workspace.addEventListener('change', () => {
    exportButton.disabled = !workspace.state.model;
    importButton.disabled = !workspace.graft || Boolean(workspace.activity);
    deleteButton.disabled = Boolean(workspace.activity);
    clearTimeout(timer);
    timer = setTimeout(showUsage, 50);
  });

  return h(
    'section',
    { class: 'panel', id: 'keep', 'aria-labelledby': 'keep-title' },
    h('header', { class: 'panel-head' }, h('h2', { id: 'keep-title' }, '5 · Keep and share')),
    h('p', {}, 'The model file works in this app, with the Graft npm package and with the ', h('code', {}, 'graft predict'), ' command line.'),
    h('div', { class: 'actions' }, exportButton, importButton, importInput, deleteButton),
    usage,
  );
}
