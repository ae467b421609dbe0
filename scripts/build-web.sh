#!/usr/bin/env bash
# Builds the browser engine into pkg/wasm (the wasm module and its wasm-bindgen glue) and copies
# the web app's chart library into www/vendor.
#   scripts/build-web.sh              release build
#   OPTIMIZE=1 scripts/build-web.sh   also wasm-opt -Oz, as shipped (about 4 minutes; halves the size)
# Skips wasm-bindgen and wasm-opt when pkg/wasm already holds this exact build.
# Needs: the wasm32-unknown-unknown target, wasm-bindgen-cli at the Cargo.lock version and, for
# OPTIMIZE=1, npm's binaryen (scripts/install-web-tools.sh installs all three).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
optimize=${OPTIMIZE:-0}
raw="$target_dir/wasm32-unknown-unknown/release/graft.wasm"
stamp=pkg/wasm/.built-from

# The web app's one third-party file, served from this site (see package.json for its version).
mkdir -p www/vendor
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE www/vendor/

cargo rustc --release --lib --target wasm32-unknown-unknown --crate-type cdylib
fingerprint="$(sha256sum < "$raw" | cut -d' ' -f1) optimize=$optimize"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
  echo "build-web: pkg/wasm is up to date"
  exit 0
fi

rm -rf pkg/wasm
wasm-bindgen --target web --out-dir pkg/wasm --out-name graft_engine "$raw"
if [ "$optimize" = 1 ]; then
  npx --no-install wasm-opt -Oz --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    pkg/wasm/graft_engine_bg.wasm -o pkg/wasm/graft_engine_bg.wasm
fi
echo "$fingerprint" > "$stamp"
ls -l pkg/wasm/graft_engine_bg.wasm
