// A static file server on 127.0.0.1 for the browser tests, recording every request it gets.
//   /                    the repository (index.html, www/, pkg/, weights/)
//   /datasets/...        ../shared/datasets (test images; never part of the site)
//   /reference/...       ../shared/reference
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const sharedRoot = resolve(process.env.GRAFT_SHARED ?? join(repoRoot, '..', 'shared'));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webmanifest': 'application/manifest+json',
};

function locate(pathname) {
  const mounts = [
    ['/datasets/', join(sharedRoot, 'datasets')],
    ['/reference/', join(sharedRoot, 'reference')],
    ['/', repoRoot],
  ];
  for (const [prefix, dir] of mounts) {
    if (pathname.startsWith(prefix)) {
      const file = normalize(join(dir, decodeURIComponent(pathname.slice(prefix.length))));
      return file === dir || file.startsWith(dir + sep) ? file : null;
    }
  }
  return null;
}

/** Starts the server; `requests` collects `{ method, url, bodyBytes }` for every request. */
export async function startServer() {
  const requests = [];
  const server = createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (chunk) => (bodyBytes += chunk.length));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, bodyBytes });
      const { pathname } = new URL(req.url, 'http://127.0.0.1');
      let file = locate(pathname);
      try {
        if (file && statSync(file).isDirectory()) file = join(file, 'index.html');
        const size = file ? statSync(file).size : -1;
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new Error('method');
        res.writeHead(200, {
          'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
          'content-length': size,
          'cache-control': 'no-cache',
        });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).pipe(res);
      } catch {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
      }
    });
  });
  await new Promise((done) => server.listen(0, '127.0.0.1', done));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, requests, close: () => new Promise((done) => server.close(done)) };
}
