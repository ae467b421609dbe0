#!/usr/bin/env bash
# Builds the browser engine into pkg/wasm, twice: graft_engine (WebGPU, with the CPU backend as
# its fallback) and graft_engine_cpu (the CPU backend alone, a smaller download); the worker
# loads the one the backend needs. Also copies the web app's chart library into www/vendor.
#   scripts/build-web.sh              release build (fast to rebuild while developing)
#   OPTIMIZE=1 scripts/build-web.sh   as shipped: link-time optimisation (Cargo's `wasm` profile),
#                                     then wasm-opt -Oz (about 15 minutes cold; a third the size)
# Skips wasm-bindgen and wasm-opt when pkg/wasm already holds these exact builds.
# Needs: the wasm32-unknown-unknown target, wasm-bindgen-cli at the Cargo.lock version and, for
# OPTIMIZE=1, npm's binaryen (scripts/install-web-tools.sh installs all three).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
optimize=${OPTIMIZE:-0}
profile=$([ "$optimize" = 1 ] && echo wasm || echo release)
raw="$target_dir/wasm32-unknown-unknown/$profile/graft.wasm"
stamp=pkg/wasm/.built-from
staging="$target_dir/wasm32-unknown-unknown/$profile/engines"

# The web app's one third-party file, served from this site (see package.json for its version).
mkdir -p www/vendor
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE www/vendor/

# Both builds write graft.wasm: each is kept under its engine's name before the next.
mkdir -p "$staging"
cargo rustc --profile "$profile" --lib --target wasm32-unknown-unknown --crate-type cdylib --features webgpu
cp "$raw" "$staging/graft_engine.wasm"
cargo rustc --profile "$profile" --lib --target wasm32-unknown-unknown --crate-type cdylib
cp "$raw" "$staging/graft_engine_cpu.wasm"

fingerprint="$(cat "$staging"/graft_engine.wasm "$staging"/graft_engine_cpu.wasm | sha256sum | cut -d' ' -f1) optimize=$optimize"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
  echo "build-web: pkg/wasm is up to date"
  exit 0
fi

rm -rf pkg/wasm
for engine in graft_engine graft_engine_cpu; do
  wasm-bindgen --target web --out-dir pkg/wasm --out-name "$engine" "$staging/$engine.wasm"
  if [ "$optimize" = 1 ]; then
    npx --no-install wasm-opt -Oz --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "pkg/wasm/${engine}_bg.wasm" -o "pkg/wasm/${engine}_bg.wasm"
  fi
done
echo "$fingerprint" > "$stamp"
ls -l pkg/wasm/*.wasm
