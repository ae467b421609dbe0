// The webcam: one stream shared by whoever needs it (a class's capture, live prediction).

import { h } from '../dom.js';

export function hasCamera() {
  return Boolean(navigator.mediaDevices?.getUserMedia);
}

/** A <video> showing the camera; `stop()` releases it. Rejects with a readable reason. */
export async function openCamera() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (error) {
    const reason = error?.name === 'NotAllowedError' ? 'permission was refused' : error?.name === 'NotFoundError' ? 'no camera was found' : error?.message ?? String(error);
    throw new Error(`the camera could not start: ${reason}`);
  }
  const video = h('video', { class: 'camera', muted: true, playsInline: true, autoplay: true, 'aria-label': 'Camera preview' });
  video.srcObject = stream;
  await video.play().catch(() => {});
  return {
    video,
    stop() {
      for (const track of stream.getTracks()) track.stop();
      video.srcObject = null;
      video.remove();
    },
  };
}

/**
 * One button's camera: `open()` resolves to the camera, or to null while one is open or opening
 * (a second click then would open a second camera that nothing closes); `close()` releases it;
 * `current` is the open one, or null.
 */
export function cameraSwitch() {
  let camera = null;
  let opening = false;
  return {
    get current() {
      return camera;
    },
    async open() {
      if (camera || opening) return null;
      opening = true;
      try {
        camera = await openCamera();
      } finally {
        opening = false;
      }
      return camera;
    },
    close() {
      camera?.stop();
      camera = null;
    },
  };
}

/**
 * Makes `button` a hold-to-record control: while it is pressed (pointer, or Space/Enter held),
 * `onFrame()` runs every `intervalMs`; `onEnd()` runs on release, or on `stop()` (returned).
 */
export function holdToRecord(button, { onFrame, onEnd, intervalMs = 200 }) {
  let timer = null;
  const start = (event) => {
    event.preventDefault();
    if (timer) return;
    button.classList.add('recording');
    button.setAttribute('aria-pressed', 'true');
    onFrame();
    timer = setInterval(onFrame, intervalMs);
  };
  const stop = () => {
    if (!timer) return;
    clearInterval(timer);
    timer = null;
    button.classList.remove('recording');
    button.setAttribute('aria-pressed', 'false');
    onEnd();
  };
  button.setAttribute('aria-pressed', 'false');
  button.addEventListener('pointerdown', start);
  button.addEventListener('pointerup', stop);
  button.addEventListener('pointerleave', stop);
  button.addEventListener('keydown', (event) => {
    if (event.key === ' ' || event.key === 'Enter') start(event);
  });
  button.addEventListener('keyup', (event) => {
    if (event.key === ' ' || event.key === 'Enter') stop();
  });
  button.addEventListener('blur', stop);
  return { stop };
}
