// Messages for the user in one live region: errors stay until dismissed, the rest fade.

import { h } from '../dom.js';

export function noticesArea() {
  const list = h('ul', { class: 'notices', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  /** Shows `message`; `details` (strings) are listed under it, folded when long. */
  const notify = (message, { kind = 'info', details = [] } = {}) => {
    const dismiss = h('button', { class: 'link', 'aria-label': 'Dismiss message', onclick: () => item.remove() }, '×');
    const more = details.length
      ? h('details', {}, h('summary', {}, `${details.length} detail${details.length > 1 ? 's' : ''}`), h('ul', {}, details.slice(0, 200).map((d) => h('li', {}, d))))
      : null;
    const item = h('li', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('span', {}, message), more, dismiss);
    list.append(item);
    if (kind !== 'error' && !details.length) setTimeout(() => item.remove(), 8000);
  };
  return { element: list, notify };
}

/**
 * Whether an error is an engine that crashed or was let go: the workspace says in one notice
 * what it did about it, so the calls that fail with it add nothing.
 */
export const reportedByWorkspace = (error) => ['ENGINE_CRASHED', 'DISPOSED'].includes(error?.code);

/** Runs `action`, showing its error as a notice instead of losing it in the console. */
export async function guarded(notify, action) {
  try {
    return await action();
  } catch (error) {
    if (!reportedByWorkspace(error)) notify(error?.message ?? String(error), { kind: 'error' });
    return undefined;
  }
}
