#!/usr/bin/env bash
# Creates bench/.venv with the pinned packages of bench/requirements.txt. Idempotent: does
# nothing when the venv exists and was installed from the current requirements.txt.
#   bench/setup-python.sh            then   bench/.venv/bin/python bench/head_vs_logreg.py ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "bench/.venv is up to date" >&2
  exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: -r "$requirements"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import numpy, sklearn, safetensors; print("bench/.venv: numpy", numpy.__version__, "scikit-learn", sklearn.__version__, "safetensors", safetensors.__version__)'
echo "$want" > "$stamp"
