#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what a bare CUDA image lacks for benchmarks/gpu_session.sh: the pinned
# versions of this project's venv, as CPython 3.12 manylinux wheels. Ray's wheel (79 MB) is repacked as
# .whl/ray.tar.xz without its Java jars (33 MB), to fit a 64 MiB upload.
#
#   bash benchmarks/gpu_wheels.sh [PYVER]      # PYVER of the GPU machine's python3 (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
PY=${PYTHON:-.venv/bin/python}
NAMES="segmentation_models_pytorch timm monai ImageHash PyWavelets tensorboardX jsonschema
jsonschema-specifications referencing rpds-py pydantic pydantic_core annotated-types typing-inspection ray"
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
freeze=$($PY -m pip list --format=freeze 2>/dev/null)
for name in $NAMES; do
    pin=$(grep -i "^${name//[-_]/[-_]}==" <<<"$freeze") || { echo "not in the venv: $name" >&2; exit 1; }
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${platforms[@]}" -d .whl "$pin"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && unzip -q "$OLDPWD"/.whl/ray-*.whl && rm -rf ray/jars && tar -cf - ray ray-*.dist-info | xz -T0 -6 >ray.tar.xz)
mv "$work/ray.tar.xz" .whl/ && rm -f .whl/ray-*.whl
du -sh .whl
