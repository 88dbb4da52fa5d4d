#!/usr/bin/env bash
# Size of a fresh virtual environment holding mediar3d (and of its largest packages).
#
# Usage (from the repository root):
#   bash benchmarks/footprint.sh                                             # torch from the default index
#   bash benchmarks/footprint.sh --index-url https://download.pytorch.org/whl/cpu   # PyTorch's CPU build
#   TORCH=torch==2.13.0 bash benchmarks/footprint.sh                         # a given torch release
#   EXTRAS='[models]' bash benchmarks/footprint.sh ...                       # with extras
# Arguments are passed to the `pip install $TORCH` step (default TORCH=torch); the project is
# installed after it without extras (or with $EXTRAS). The environment is made in a temporary
# folder and removed. Sizes: du, in MiB (1 MiB = 1,048,576 bytes).
set -euo pipefail
repo=$(pwd)
env=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$env")"' EXIT
python3 -m venv "$env"
"$env/bin/pip" install -q "${TORCH:-torch}" "$@"
"$env/bin/pip" install -q "$repo${EXTRAS:-}"
echo "python: $("$env/bin/python" --version)"
echo "torch: $("$env/bin/python" -c 'import torch; print(torch.__version__)')"
echo "venv: $(( $(du -sb "$env" | cut -f1) / 1048576 )) MiB"
echo "largest packages:"
du -s "$env"/lib/python3*/site-packages/* | sort -rn | head -8 | while read -r kb path; do
    printf '  %6d MiB  %s\n' $((kb / 1024)) "$(basename "$path")"
done
"$env/bin/python" -c "import sys, mediar3d.models; mediar3d.models.load_model('default'); print('default model loads; optional packages present:', [m for m in ('torchvision', 'timm', 'segmentation_models_pytorch', 'monai') if __import__('importlib.util').util.find_spec(m)])"
