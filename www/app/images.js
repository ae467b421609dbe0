// Small image helpers for the page: thumbnails, webcam frames, object URLs.

const THUMB_SIZE = 112;

/** A small JPEG of the image for the class strips, or null if the browser cannot decode it. */
export async function thumbnail(image) {
  try {
    const bitmap = await createImageBitmap(image);
    const scale = THUMB_SIZE / Math.min(bitmap.width, bitmap.height);
    const w = Math.max(1, Math.round(bitmap.width * scale));
    const h = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = new OffscreenCanvas(THUMB_SIZE, THUMB_SIZE);
    const context = canvas.getContext('2d');
    context.imageSmoothingQuality = 'high';
    context.drawImage(bitmap, (THUMB_SIZE - w) / 2, (THUMB_SIZE - h) / 2, w, h);
    bitmap.close();
    return await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.8 });
  } catch {
    return null;
  }
}

/** The current webcam frame, centre-cropped to a square, on a canvas of its own. */
export function frameCanvas(video) {
  const side = Math.min(video.videoWidth, video.videoHeight);
  if (!side) throw new Error('the camera has not started yet');
  const canvas = new OffscreenCanvas(side, side);
  canvas.getContext('2d').drawImage(video, (video.videoWidth - side) / 2, (video.videoHeight - side) / 2, side, side, 0, 0, side, side);
  return canvas;
}

/** The current webcam frame, whole, on a canvas of its own (a detector sees all of it). */
export function wholeFrame(video) {
  const { videoWidth: width, videoHeight: height } = video;
  if (!width || !height) throw new Error('the camera has not started yet');
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').drawImage(video, 0, 0, width, height);
  return canvas;
}

/** The current webcam frame as a PNG file, centre-cropped to a square. */
export async function captureFrame(video, name = `webcam-${Date.now()}.png`) {
  const blob = await frameCanvas(video).convertToBlob({ type: 'image/png' });
  return new File([blob], name, { type: 'image/png' });
}

/** Object URLs for blobs shown on the page, revoked together when a view is redrawn. */
export class UrlPool {
  #urls = [];

  url(blob) {
    const url = URL.createObjectURL(blob);
    this.#urls.push(url);
    return url;
  }

  clear() {
    for (const url of this.#urls) URL.revokeObjectURL(url);
    this.#urls = [];
  }
}

/** Reads every file under dropped folders, setting `relativePath` as `<input webkitdirectory>` would. */
export async function filesFromDrop(dataTransfer) {
  const entries = Array.from(dataTransfer.items ?? [])
    .map((item) => item.webkitGetAsEntry?.())
    .filter(Boolean);
  if (!entries.some((entry) => entry.isDirectory)) return { files: Array.from(dataTransfer.files), folder: false };
  const files = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      Object.defineProperty(file, 'relativePath', { value: `${path}${file.name}` });
      files.push(file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${path}${entry.name}/`);
      }
    }
  };
  // Several class folders dropped at once are read as if they sat in one parent folder.
  const prefix = entries.filter((entry) => entry.isDirectory).length > 1 ? 'dropped/' : '';
  for (const entry of entries) await walk(entry, prefix);
  return { files, folder: true };
}
