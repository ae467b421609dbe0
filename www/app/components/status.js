// The status bar: engine loading, which backend runs (and why the CPU, when it does), and the
// progress of whatever the engine is doing.

import { h } from '../dom.js';

const BACKENDS = { auto: 'Automatic', webgpu: 'WebGPU (GPU)', cpu: 'CPU' };

export function statusBar(workspace, { backend }) {
  const badge = h('span', { class: 'badge', id: 'backend' }, 'Starting…');
  const message = h('p', { class: 'status-message', id: 'engine-status', 'aria-live': 'polite' }, 'Loading the engine…');
  const bar = h('progress', { id: 'activity-progress', hidden: true, 'aria-label': 'Progress' });
  const select = h('select', { id: 'backend-choice', 'aria-label': 'Compute backend' }, Object.entries(BACKENDS).map(([value, label]) => h('option', { value, selected: value === backend }, label)));
  select.addEventListener('change', () => {
    const url = new URL(location.href);
    url.searchParams.set('backend', select.value);
    location.assign(url);
  });

  const element = h('div', { class: 'status-bar' }, h('div', { class: 'status-line' }, badge, message), bar, h('label', { class: 'backend-choice' }, 'Run on ', select));

  return {
    element,
    /** Weights download progress while the engine starts. */
    loading(progress) {
      if (progress.status === 'progress' && progress.total) {
        bar.hidden = false;
        bar.max = progress.total;
        bar.value = progress.loaded ?? 0;
        message.textContent = `Loading the model: ${((progress.loaded ?? 0) / 1e6).toFixed(1)} of ${(progress.total / 1e6).toFixed(1)} MB (once; then it is cached in this browser)`;
      } else if (progress.status === 'initiate' && progress.cached) {
        message.textContent = 'Loading the model from this browser’s cache…';
      }
    },
    ready() {
      const graft = workspace.graft;
      badge.textContent = graft.backend === 'webgpu' ? 'WebGPU' : 'CPU';
      badge.className = `badge ${graft.backend}`;
      message.textContent = graft.backend === 'webgpu'
        ? 'Ready. Training runs on your GPU through WebGPU.'
        : `Ready. Running on the CPU${graft.fallbackReason ? ` because WebGPU is not available (${graft.fallbackReason})` : ''}: it works, only slower.`;
      bar.hidden = true;
      workspace.addEventListener('change', () => this.activity(workspace.activity));
    },
    failed(error) {
      badge.textContent = 'Stopped';
      badge.className = 'badge error';
      message.textContent = `The engine could not start: ${error.message}`;
      bar.hidden = true;
    },
    activity(activity) {
      bar.hidden = !activity;
      if (!activity) return;
      // Work of unknown length (reading a drop, restarting) shows as an indeterminate bar.
      if (activity.total) {
        bar.max = activity.total;
        bar.value = activity.done;
      } else {
        bar.removeAttribute('value');
      }
      bar.setAttribute('aria-valuetext', activity.total ? `${activity.label}: ${activity.done} of ${activity.total}` : activity.label);
    },
  };
}
