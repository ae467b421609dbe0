#!/usr/bin/env bash
# Installs what the browser build and its tests need; each step is skipped when already done.
#   - the wasm32 target (rustup), wasm-bindgen-cli at exactly the Cargo.lock version
#   - npm packages: uplot (the web app's charts), and for development playwright-core (drives the
#     system Chromium; no browser download), binaryen (wasm-opt; Debian's 108 breaks our output)
#     and typescript (tsc checks the package's types in the tests)
#   - with --browser: Debian's chromium, when missing (needs root, as on CI), for the tests
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

wanted=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wanted" ]; then
  echo "install-web-tools: wasm-bindgen-cli $wanted (about 3 minutes)"
  # Not --locked: one of its locked dependencies is no longer on the registry.
  cargo install --quiet wasm-bindgen-cli --version "$wanted"
fi

if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/binaryen ] || [ ! -d node_modules/uplot ] || [ ! -d node_modules/typescript ]; then
  npm ci --no-audit --no-fund
fi

if [ "${1:-}" = --browser ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    echo "install-web-tools: install Debian's chromium (sudo apt-get install chromium)" >&2
    exit 1
  fi
fi
