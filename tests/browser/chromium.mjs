// Debian's Chromium, headless, with its WebGPU adapter (SwiftShader on machines without a GPU)
// and a fake camera, so the webcam paths run too. Never downloads a browser.
import { chromium } from 'playwright-core';

/** `{ webgpu: false }` launches a browser without WebGPU, as many still are. */
export function launchChromium({ webgpu = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      webgpu ? '--enable-unsafe-webgpu' : '--disable-features=WebGPU',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * A fresh context and page on the test harness (which exposes `Graft`, `fetchImages` and
 * `countFrames`), with page errors collected; `onRequest` sees every request of the context.
 */
export async function openHarness(browser, origin, { onRequest } = {}) {
  const context = await browser.newContext();
  if (onRequest) context.on('request', onRequest);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${origin}/tests/browser/harness.html`);
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready');
  return { page, context, errors };
}
