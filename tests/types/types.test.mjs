// The package's types (pkg/graft.d.ts) checked with tsc against what users copy: every
// JavaScript example in pkg/README.md, and the example page www/examples/embed.js. A wrong
// example (or wrong types) fails here; so does a deliberately wrong use, proving the check bites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const work = join(root, 'test-artifacts', 'types');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** The inputs the README's examples take for granted. */
const DECLARED = `import { Graft, drawExplanation } from 'graft';
declare const canvas: HTMLCanvasElement;
declare const catFiles: File[];
declare const dogFiles: File[];
declare const photo: File;
declare const savedEmbeddings: Float32Array;
declare const savedIds: string[];
declare const savedBlobs: Blob[];
`;

/** Runs tsc on the given files (paths relative to `work`) with the tests' tsconfig. */
function typeCheck(files) {
  mkdirSync(work, { recursive: true });
  const config = JSON.parse(readFileSync(join(root, 'tests', 'types', 'tsconfig.json'), 'utf8'));
  config.compilerOptions.paths = { graft: [join(root, 'pkg', 'graft.d.ts')] };
  config.files = files;
  writeFileSync(join(work, 'tsconfig.json'), JSON.stringify(config));
  return spawnSync(process.execPath, [tsc, '-p', join(work, 'tsconfig.json')], { encoding: 'utf8' });
}

function readmeExamples() {
  const readme = readFileSync(join(root, 'pkg', 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1].replace(/^import .*\n/gm, ''));
  assert.ok(blocks.length >= 2, 'the package README has JavaScript examples');
  // Each block in its own async function, so blocks may reuse names and use await.
  return DECLARED + blocks.map((code, i) => `export async function example${i}() {\n${code}}\n`).join('\n');
}

test('the package README examples and the example page type-check against graft.d.ts', () => {
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'readme-examples.ts'), readmeExamples());
  const result = typeCheck(['readme-examples.ts', join(root, 'www', 'examples', 'embed.js')]);
  assert.equal(result.status, 0, result.stdout + result.stderr);
});

test('a wrong use of the API fails the type check', () => {
  mkdirSync(work, { recursive: true });
  writeFileSync(
    join(work, 'wrong.ts'),
    `${DECLARED}export async function wrong() {
  const graft = await Graft.create({ weights: '/w.safetensors' });
  await graft.train({ epoch: 3 });
  const report = await graft.train();
  report.bestEpoch;
}
`,
  );
  const result = typeCheck(['wrong.ts']);
  assert.notEqual(result.status, 0);
  assert.match(result.stdout, /'epoch' does not exist in type/);
  assert.match(result.stdout, /Property 'bestEpoch' does not exist on type 'TrainReport'/);
});
