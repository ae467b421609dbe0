#!/usr/bin/env bash
# Builds the browser engine into pkg/: the wasm module and its wasm-bindgen glue.
#   scripts/build-web.sh          release build, as tested
#   OPTIMIZE=1 scripts/build-web.sh   also runs wasm-opt -Oz (the shipped build; slow)
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli at the Cargo.lock version
# (scripts/install-web-tools.sh installs both), and for OPTIMIZE=1, npm's binaryen.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

cargo rustc --release --lib --target wasm32-unknown-unknown --crate-type cdylib
rm -rf pkg/wasm
wasm-bindgen --target web --out-dir pkg/wasm --out-name graft_engine \
  "$target_dir/wasm32-unknown-unknown/release/graft.wasm"
if [ "${OPTIMIZE:-0}" = 1 ]; then
  npx --no-install wasm-opt -Oz --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    pkg/wasm/graft_engine_bg.wasm -o pkg/wasm/graft_engine_bg.wasm
fi
ls -l pkg/wasm/graft_engine_bg.wasm
