// A tiny element builder, so components read as markup without a framework.

/**
 * `h('button', { class: 'primary', onclick }, 'Train')`. Props starting with `on` become
 * listeners, `class`/`for`/`aria-*`/`data-*` attributes, everything else properties.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') element.addEventListener(key.slice(2), value);
    else if (key === 'class' || key === 'for' || key === 'role' || key.startsWith('aria-') || key.startsWith('data-')) element.setAttribute(key, value === true ? '' : value);
    else if (key === 'style') Object.assign(element.style, value);
    else element[key] = value;
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function render(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

export function percent(value, digits = 1) {
  return value === null || value === undefined ? '—' : `${(value * 100).toFixed(digits)}%`;
}

/** "12 s", "3 min 5 s". */
export function duration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
