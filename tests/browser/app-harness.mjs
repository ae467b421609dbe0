// What the web app's end-to-end files share: browser contexts that record every request of
// every page, worker and service worker, every page error, CSP violation and notice; the app
// opened and waited for; the project as IndexedDB holds it; timings and screenshots under
// test-artifacts/; and the privacy checks over all that was recorded.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useBrowser } from './fixtures.mjs';
import { repoRoot } from './server.mjs';

export const MINUTES = 60_000;

/** Runs `action` once per run of the file; every later call gets the same promise. */
export function once(action) {
  let result;
  return () => (result ??= action());
}

/** Starts counting the page's animation frames, to see that it stays responsive meanwhile. */
export function countFrames(page) {
  return page.evaluate(() => {
    globalThis.frames = 0;
    globalThis.framesFrom = performance.now();
    globalThis.framesStop = false;
    const tick = () => {
      globalThis.frames += 1;
      if (!globalThis.framesStop) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

/** Stops `countFrames`; resolves to the frames per second the page drew since it started. */
export function framesPerSecond(page) {
  return page.evaluate(() => {
    globalThis.framesStop = true;
    return globalThis.frames / ((performance.now() - globalThis.framesFrom) / 1000);
  });
}

/**
 * Drops plain-coloured PNGs on `selector`, one drop per entry of `drops`, all in one task (as a
 * second drop right after the first would come). A drop is `{ images: [[name, colour], ...] }`,
 * or with `folder: name` those images in a folder read through the entries API, as Chromium
 * gives a dropped folder.
 */
export function dropImages(page, selector, drops) {
  return page.evaluate(
    async ({ selector, drops }) => {
      const png = async ([name, colour]) => {
        const canvas = new OffscreenCanvas(64, 48);
        const g = canvas.getContext('2d');
        g.fillStyle = colour;
        g.fillRect(0, 0, 64, 48);
        return new File([await canvas.convertToBlob({ type: 'image/png' })], name, { type: 'image/png' });
      };
      const prepared = await Promise.all(drops.map(async ({ folder, images }) => ({ folder, files: await Promise.all(images.map(png)) })));
      for (const { folder, files } of prepared) {
        const entry = (file) => ({ isFile: true, isDirectory: false, name: file.name, file: (resolve) => resolve(file) });
        let read = false;
        const directory = { isFile: false, isDirectory: true, name: folder, createReader: () => ({ readEntries: (resolve) => resolve(read ? [] : ((read = true), files.map(entry))) }) };
        const event = new Event('drop', { bubbles: true, cancelable: true });
        const dataTransfer = folder ? { items: [{ webkitGetAsEntry: () => directory }], files: [] } : { items: [], files };
        Object.defineProperty(event, 'dataTransfer', { value: dataTransfer });
        document.querySelector(selector).dispatchEvent(event);
      }
    },
    { selector, drops },
  );
}

/** From now on, keeps every camera stream the page opens, for `cameraTrackStates`. */
export function keepCameraStreams(page) {
  return page.evaluate(() => {
    const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    globalThis.cameraStreams = [];
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      const stream = await open(constraints);
      globalThis.cameraStreams.push(stream);
      return stream;
    };
  });
}

/** Per stream opened since `keepCameraStreams`, its tracks' states ('live' or 'ended'). */
export function cameraTrackStates(page) {
  return page.evaluate(() => globalThis.cameraStreams.map((stream) => stream.getTracks().map((track) => track.readyState)));
}

/**
 * Starts the server and Chromium for the file's tests (see `useBrowser`), and records what the
 * app does in them. `path` is the app page a fresh context opens, `projectId` the project it
 * stores; screenshots and timings.json go to test-artifacts/`artifacts`/, and the timings are
 * logged as `title`'s after the run. The returned object's `server` and `browser` are set once
 * `before` ran.
 */
export function useApp({ artifacts, path: appPath, projectId, title }) {
  const session = useBrowser();
  const artifactsDir = join(repoRoot, 'test-artifacts', artifacts);
  /** Every request of every context: `{ url, method, bodyBytes }`. */
  const requestLog = [];
  const pageErrors = [];
  const cspViolations = [];
  const timings = {};

  before(() => mkdirSync(artifactsDir, { recursive: true }));
  after(() => {
    writeFileSync(join(artifactsDir, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
    console.log(`${title} timings (s)`, JSON.stringify(timings));
  });

  async function timed(name, action) {
    const start = performance.now();
    const result = await action();
    timings[name] = Number(((performance.now() - start) / 1000).toFixed(2));
    return result;
  }

  const shot = (page, name) => page.screenshot({ path: join(artifactsDir, `${name}.png`), fullPage: true });

  /**
   * A context of `browser` (the file's unless given) whose every request, page error and CSP
   * violation is recorded, and whose pages keep every notice in `globalThis.noticeLog`; the
   * other options go to Playwright's `newContext`.
   */
  async function newContext({ browser = session.browser, ...options } = {}) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, ...options });
    context.on('request', (request) => requestLog.push({ url: request.url(), method: request.method(), bodyBytes: request.postDataBuffer()?.length ?? 0 }));
    // A Content-Security-Policy violation would mean the page tried something its policy forbids.
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
      // Notices fade: each is kept from its start, for the tests to read what was said.
      globalThis.noticeLog = [];
      new MutationObserver((records) => {
        for (const record of records) {
          for (const node of record.addedNodes) {
            if (node.classList?.contains('notice') && node.parentElement?.classList.contains('notices')) {
              const kind = node.className.replace('notice', '').trim();
              globalThis.noticeLog.push({ kind, text: node.querySelector('span').textContent, details: Array.from(node.querySelectorAll('details li'), (li) => li.textContent) });
            }
          }
        }
      }).observe(document, { childList: true, subtree: true });
    });
    context.on('page', (page) => {
      page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
      page.on('console', (message) => {
        if (/CSP violation|Content Security Policy/.test(message.text())) cspViolations.push(message.text());
      });
      page.on('dialog', (dialog) => dialog.accept());
    });
    return context;
  }

  async function openApp(page, path = appPath) {
    await page.goto(`${session.server.origin}${path}`);
    await page.waitForSelector('body[data-ready]', { timeout: 5 * MINUTES });
  }

  /**
   * A page on a fresh context (its own storage, so a new project), with the app open at `path`;
   * the other options go to `newContext`.
   */
  async function freshApp({ path = appPath, ...options } = {}) {
    const context = await newContext(options);
    const page = await context.newPage();
    await openApp(page, path);
    return { context, page };
  }

  /** The project as stored in IndexedDB (without the model bytes). */
  function storedProject(page, id = projectId) {
    return page.evaluate(
      (id) =>
        new Promise((resolve, reject) => {
          const open = indexedDB.open('graft');
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const db = open.result;
            const get = db.transaction('projects').objectStore('projects').get(id);
            get.onerror = () => reject(get.error);
            get.onsuccess = () => {
              db.close();
              const p = get.result;
              resolve(p ? { classes: p.classes, images: p.images, report: p.report, options: p.options, hasModel: Boolean(p.model || p.modelChunks) } : null);
            };
          };
        }),
      id,
    );
  }

  /**
   * The privacy checks over the whole run so far: more than `minRequests` requests recorded,
   * every one a GET of the page's own server that sent nothing, none for a test image
   * (`isTestImage(url)` on the server's side), and no CSP violation or page error anywhere.
   */
  function assertPrivate({ minRequests, isTestImage }) {
    const { origin, requests } = session.server;
    const network = requestLog.filter((r) => !r.url.startsWith('blob:') && !r.url.startsWith('data:'));
    assert.ok(network.length > minRequests, `requests recorded: ${network.length}`);
    assert.deepEqual(network.filter((r) => !r.url.startsWith(`${origin}/`)), [], 'requests to other hosts');
    assert.deepEqual(network.filter((r) => r.method !== 'GET' || r.bodyBytes > 0), [], 'requests that send data');
    assert.deepEqual(requests.filter((r) => r.method !== 'GET' || r.bodyBytes > 0), [], 'seen by the server');
    assert.deepEqual(requests.filter((r) => isTestImage(r.url)), [], 'the images came from the file inputs, not the server');
    assert.deepEqual(cspViolations, []);
    assert.deepEqual(pageErrors, []);
  }

  return Object.assign(session, { artifactsDir, timings, timed, shot, newContext, openApp, freshApp, storedProject, assertPrivate });
}
