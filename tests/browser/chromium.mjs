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
