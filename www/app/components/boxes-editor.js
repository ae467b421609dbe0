// The box editor: one image with its boxes, drawn, moved and resized with a mouse, a pen or a
// finger (Pointer Events; `touch-action: none` keeps a drag from scrolling the page), or with
// the keyboard. Boxes are kept in the image's own pixels; on screen they are placed in percent
// of the picture, so it may be shown at any size.

import { h } from '../dom.js';
import { PALETTE } from './charts.js';

const HANDLES = ['nw', 'n', 'ne', 'e', 'se', 's', 'sw', 'w'];
/** A press that moves less than this (screen pixels) selects or deselects; it draws nothing. */
const MIN_DRAG = 4;
/** The smallest box side, in image pixels: the engine refuses boxes without area. */
const MIN_SIDE = 2;

export const classColour = (index) => PALETTE[index % PALETTE.length];

export const SHORTCUTS = [
  ['Drag on the image', 'draw a box of the selected class'],
  ['Drag a box or its handles', 'move or resize it'],
  ['B', 'add a box in the middle, to place with the keys'],
  ['Tab / Shift+Tab', 'select the next / previous box'],
  ['Arrows', 'move the selected box (Shift: 10 times as far)'],
  ['Alt+arrows', 'resize it from its right and bottom edges'],
  ['1 to 9', 'class of the selected box, or of the next one'],
  ['Delete or Backspace', 'delete the selected box'],
  ['Escape', 'deselect'],
  ['N / P, or ← / → with no box selected', 'next / previous image'],
];

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

/**
 * `onChange(boxes)` after each finished edit; `onNavigate(step)` for next/previous image;
 * `classForKey(n)` maps the number key n to a class id (or null) and, with nothing selected,
 * makes it the class of the next box; `currentClass()` is the class new boxes get.
 */
export function boxesEditor({ onChange, onNavigate, classForKey, currentClass }) {
  const picture = h('img', { class: 'box-picture', alt: '', draggable: false });
  const layer = h('div', { class: 'box-layer' });
  const announcer = h('p', { class: 'visually-hidden', 'aria-live': 'polite', id: 'box-announcer' });
  const stage = h('div', {
    class: 'box-stage',
    id: 'box-stage',
    tabIndex: 0,
    role: 'application',
    'aria-roledescription': 'box editor',
    'aria-describedby': 'box-shortcuts',
  }, picture, layer);
  const element = h('div', { class: 'box-editor' }, stage, announcer);

  let image = null; // { width, height, name }
  let boxes = [];
  let classes = [];
  let selected = -1;
  let drag = null;

  const classIndex = (classId) => classes.findIndex((c) => c.id === classId);
  const describe = (i) => {
    const { classId, box } = boxes[i];
    const label = classes[classIndex(classId)]?.label ?? 'no class';
    return `Box ${i + 1} of ${boxes.length}: ${label}, ${Math.round(box[2] - box[0])} by ${Math.round(box[3] - box[1])} pixels at ${Math.round(box[0])}, ${Math.round(box[1])}`;
  };

  function render() {
    layer.replaceChildren(
      ...boxes.map(({ classId, box }, i) => {
        const index = classIndex(classId);
        const element = h(
          'div',
          { class: `box${i === selected ? ' selected' : ''}`, 'data-index': i, 'data-class': classes[index]?.label ?? '' },
          h('span', { class: 'box-label' }, classes[index]?.label ?? '?'),
          i === selected ? HANDLES.map((edge) => h('span', { class: `handle ${edge}`, 'data-handle': edge })) : null,
        );
        Object.assign(element.style, {
          left: `${(box[0] / image.width) * 100}%`,
          top: `${(box[1] / image.height) * 100}%`,
          width: `${((box[2] - box[0]) / image.width) * 100}%`,
          height: `${((box[3] - box[1]) / image.height) * 100}%`,
        });
        element.style.setProperty('--box-colour', classColour(Math.max(0, index)));
        return element;
      }),
    );
    stage.dataset.boxes = String(boxes.length);
    stage.dataset.selected = String(selected);
  }

  function select(index) {
    selected = index;
    render();
    announcer.textContent = index >= 0 ? describe(index) : 'No box selected';
  }

  function commit() {
    render();
    onChange(boxes.map((b) => ({ classId: b.classId, box: [...b.box] })));
  }

  /** The box with sides in order, inside the image, at least MIN_SIDE wide and high. */
  function tidy([x0, y0, x1, y1]) {
    const [left, right] = [Math.min(x0, x1), Math.max(x0, x1)].map((x) => clamp(x, 0, image.width));
    const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)].map((y) => clamp(y, 0, image.height));
    const fit = (low, high, limit) => (high - low >= MIN_SIDE ? [low, high] : low + MIN_SIDE <= limit ? [low, low + MIN_SIDE] : [limit - MIN_SIDE, limit]);
    const [l, r] = fit(left, right, image.width);
    const [t, b] = fit(top, bottom, image.height);
    return [l, t, r, b];
  }

  /** The box moved by (dx, dy), kept whole inside the image. */
  function shifted([x0, y0, x1, y1], dx, dy) {
    const mx = clamp(dx, -x0, image.width - x1);
    const my = clamp(dy, -y0, image.height - y1);
    return [x0 + mx, y0 + my, x1 + mx, y1 + my];
  }

  function toImage(event) {
    const rect = layer.getBoundingClientRect();
    return [((event.clientX - rect.left) / rect.width) * image.width, ((event.clientY - rect.top) / rect.height) * image.height];
  }

  layer.addEventListener('pointerdown', (event) => {
    if (!image || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    stage.focus({ preventScroll: true });
    const point = toImage(event);
    const boxElement = event.target.closest('.box');
    const handle = event.target.closest('.handle')?.dataset.handle;
    const index = boxElement ? Number(boxElement.dataset.index) : -1;
    if (index >= 0 && index !== selected) select(index);
    drag = {
      kind: handle ? 'resize' : index >= 0 ? 'move' : 'draw',
      handle,
      index,
      start: point,
      client: [event.clientX, event.clientY],
      original: index >= 0 ? [...boxes[index].box] : null,
      moved: false,
    };
    layer.setPointerCapture(event.pointerId);
  });

  layer.addEventListener('pointermove', (event) => {
    if (!drag) return;
    const [x, y] = toImage(event);
    const [dx, dy] = [x - drag.start[0], y - drag.start[1]];
    if (!drag.moved && Math.hypot(event.clientX - drag.client[0], event.clientY - drag.client[1]) < MIN_DRAG) return;
    drag.moved = true;
    if (drag.kind === 'draw') {
      if (drag.index < 0 && !currentClass()) {
        announcer.textContent = 'Add a class first: a box needs one';
        drag = null;
        return;
      }
      if (drag.index < 0) {
        boxes.push({ classId: currentClass(), box: [...drag.start, ...drag.start] });
        drag.index = boxes.length - 1;
        selected = drag.index;
      }
      boxes[drag.index].box = tidy([...drag.start, x, y]);
    } else if (drag.kind === 'move') {
      boxes[drag.index].box = shifted(drag.original, dx, dy);
    } else {
      const [x0, y0, x1, y1] = drag.original;
      const edge = drag.handle;
      boxes[drag.index].box = tidy([edge.includes('w') ? x0 + dx : x0, edge.includes('n') ? y0 + dy : y0, edge.includes('e') ? x1 + dx : x1, edge.includes('s') ? y1 + dy : y1]);
    }
    render();
  });

  const endDrag = () => {
    if (!drag) return;
    const { kind, moved, index } = drag;
    drag = null;
    if (moved) {
      commit();
      announcer.textContent = describe(index);
    } else if (kind === 'draw') {
      select(-1); // a click beside the boxes
    }
  };
  layer.addEventListener('pointerup', endDrag);
  layer.addEventListener('pointercancel', endDrag);

  stage.addEventListener('keydown', (event) => {
    if (!image || event.ctrlKey || event.metaKey) return;
    const key = event.key;
    const letter = key.toLowerCase(); // B, N and P work with Caps Lock on too
    const handled = () => event.preventDefault();
    if (/^[1-9]$/.test(key)) {
      const classId = classForKey(Number(key), selected < 0);
      if (classId && selected >= 0) {
        boxes[selected].classId = classId;
        commit();
        announcer.textContent = describe(selected);
      }
      handled();
    } else if (key === 'Tab' && boxes.length) {
      const next = selected < 0 ? (event.shiftKey ? boxes.length - 1 : 0) : selected + (event.shiftKey ? -1 : 1);
      if (next >= 0 && next < boxes.length) {
        select(next);
        handled();
      } else {
        select(-1); // past the last box, the focus moves on
      }
    } else if (key === 'Escape') {
      select(-1);
      handled();
    } else if ((key === 'Delete' || key === 'Backspace') && selected >= 0) {
      boxes.splice(selected, 1);
      selected = -1;
      commit();
      announcer.textContent = `Box deleted; ${boxes.length} left`;
      handled();
    } else if (key.startsWith('Arrow') && selected >= 0) {
      // One step is about a screen pixel, whatever the image's size on screen.
      const step = Math.max(1, Math.round(image.width / (layer.getBoundingClientRect().width || image.width))) * (event.shiftKey ? 10 : 1);
      const [dx, dy] = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[key];
      const box = boxes[selected].box;
      boxes[selected].box = event.altKey ? tidy([box[0], box[1], box[2] + dx, box[3] + dy]) : shifted(box, dx, dy);
      commit();
      announcer.textContent = describe(selected);
      handled();
    } else if ((key === 'ArrowRight' || key === 'ArrowLeft') && !event.altKey) {
      onNavigate(key === 'ArrowRight' ? 1 : -1);
      handled();
    } else if ((letter === 'n' || letter === 'p') && !event.altKey) {
      onNavigate(letter === 'n' ? 1 : -1);
      handled();
    } else if (letter === 'b' && !event.altKey && currentClass()) {
      const [w, h] = [image.width / 4, image.height / 4];
      boxes.push({ classId: currentClass(), box: tidy([image.width / 2 - w / 2, image.height / 2 - h / 2, image.width / 2 + w / 2, image.height / 2 + h / 2]) });
      selected = boxes.length - 1;
      commit();
      announcer.textContent = `New ${describe(selected)}`;
      handled();
    }
  });

  return {
    element,
    /** Shows an image (`{ url, name, width, height }`) with its boxes; nothing selected. */
    show(next, nextBoxes) {
      image = next;
      boxes = nextBoxes.map((b) => ({ classId: b.classId, box: [...b.box] }));
      selected = -1;
      drag = null;
      picture.src = next.url;
      picture.alt = next.name;
      stage.setAttribute('aria-label', `Boxes on ${next.name}: ${boxes.length}`);
      stage.hidden = false;
      render();
    },
    clear() {
      image = null;
      boxes = [];
      stage.hidden = true;
      layer.replaceChildren();
    },
    /** New class names or colours: the boxes are labelled again. */
    setClasses(next) {
      classes = next;
      if (image) render();
    },
    focus() {
      stage.focus({ preventScroll: true });
    },
  };
}
