#!/usr/bin/env bash
# The peer benchmark end to end (`make bench-peers`): Graft against ONNX Runtime (native and
# Web) and TF.js on the same network, weights and pixels. Writes bench/results/peers.json,
# peers.md and peers.svg. Needs the browser engine built (`make web`) and Debian's chromium.
# Run it on an otherwise idle machine: the 2-thread and 2-worker figures need both cores.
#   bench/peers/run.sh            RUNS=N: interleaved native runs of each side (default 3)
# The peers are installed here only, never by the repository's own set-up: pip (pinned,
# bench/peers/requirements.txt) into bench/peers/.venv, npm (bench/peers/package-lock.json)
# into bench/peers/node_modules.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$here/build"
runs="${RUNS:-3}"
cargo="${CARGO:-cargo}"
cd "$repo"

./setup.sh
if [[ ! -f pkg/wasm/graft_engine_bg.wasm ]]; then
  echo "bench/peers: pkg/wasm is not built; run make web first" >&2
  exit 1
fi

# Python: reinstalled only when requirements.txt changed.
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: -r "$here/requirements.txt"
  "$venv/bin/python" -m pip check
  echo "$want" > "$stamp"
fi

# npm: exactly the lock file; no install scripts (none is needed to serve the dist files).
(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

mkdir -p "$build"
rm -f "$build"/graft-native-*.json "$build"/ort-native-*.json
"$venv/bin/python" "$here/build_models.py" --check

# Native, interleaved (A B A B ...): the machine is shared, so each side sees the same noise.
# The example also writes the pixels and Graft's features that native.py reads.
"$cargo" build --release --quiet --example peers-native
for run in $(seq 1 "$runs"); do
  "$cargo" run --release --quiet --example peers-native
  mv "$build/graft-native.json" "$build/graft-native-$run.json"
  "$venv/bin/python" "$here/native.py" --out "$build/ort-native-$run.json"
done

node "$here/browser.mjs"
node "$here/combine.mjs"
