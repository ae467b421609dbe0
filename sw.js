// Graft's service worker: after the first visit the app works offline.
// Network first (so a new release shows at once), falling back to what was cached. Only this
// site's own files are ever fetched or cached; the backbone weights are cached by the engine.

const CACHE = 'graft-app-v1';
const SHELL = [
  './',
  './index.html',
  './www/medical/',
  './www/medical/index.html',
  './www/detect/',
  './www/detect/index.html',
  './www/app.css',
  './www/vendor/uPlot.iife.min.js',
  './www/vendor/uPlot.min.css',
  './www/app/main.js',
  './www/app/dom.js',
  './www/app/store.js',
  './www/app/images.js',
  './www/app/workspace.js',
  './www/app/project-workspace.js',
  './www/app/one-tab.js',
  './www/app/detect-workspace.js',
  './www/app/components/camera.js',
  './www/app/components/charts.js',
  './www/app/components/classes.js',
  './www/app/components/keep.js',
  './www/app/components/notices.js',
  './www/app/components/results.js',
  './www/app/components/status.js',
  './www/app/components/training.js',
  './www/app/components/training-run.js',
  './www/app/components/tryit.js',
  './www/app/components/try-input.js',
  './www/app/components/boxes-editor.js',
  './www/app/components/detect-annotate.js',
  './www/app/components/detect-results.js',
  './www/app/components/detect-training.js',
  './www/app/components/detect-tryit.js',
  './pkg/graft.js',
  './pkg/worker.js',
  './pkg/wasm/graft_engine.js',
  './pkg/wasm/graft_engine_bg.wasm',
  './pkg/wasm/graft_engine_cpu.js',
  './pkg/wasm/graft_engine_cpu_bg.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key.startsWith('graft-app-') && key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.includes('/weights/')) return;
  event.respondWith(
    (async () => {
      try {
        const response = await fetch(event.request);
        if (response.ok && response.type === 'basic') {
          const cache = await caches.open(CACHE);
          await cache.put(event.request, response.clone());
        }
        return response;
      } catch (error) {
        const cached = await caches.match(event.request, { ignoreSearch: true });
        if (cached) return cached;
        throw error;
      }
    })(),
  );
});
