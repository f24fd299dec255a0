#!/usr/bin/env bash
# Builds .gpu_site/site.tar.xz: the Python packages nnU-Net needs that the GPU machine lacks
# (it has PyTorch, numpy, scipy, scikit-image, pandas, matplotlib ... but not nnU-Net), installed
# for its Python 3.12 on x86-64. The wheels (SimpleITK alone is ~53 MB) are over the 64 MiB a
# device call may carry, so they are installed here into one folder and packed with xz.
# Run on this machine (needs the package index), then carry .gpu_site to the device (.gitignore
# keeps it out of git):
#   bash benchmarks/gpu_site.sh && ls -la .gpu_site
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${SPCL_GPU_SITE_OUT:-.gpu_site}
# the GPU machine's Python; another version only for a local dry run of gpu_experiment.sh
pyver=${SPCL_GPU_PYTHON_VERSION:-3.12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# binary wheels for CPython 3.12, x86-64 (no dependencies: the GPU image has the rest)
packages=(nnunetv2==2.8.1 SimpleITK batchgeneratorsv2 batchgenerators dynamic-network-architectures blosc2 ndindex
          numexpr nibabel yacs connected-components-3d)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$work/wheels" "${packages[@]}" 2>&1 | grep -v "^WARNING: Location" || true
# acvl-utils ships as a source distribution only (pure Python): build its wheel here
"$PY" -m pip wheel -q --no-deps -w "$work/wheels" acvl-utils==0.2.6 2>&1 | grep -v "^WARNING: Location" || true
ls "$work/wheels"
"$PY" -m pip install -q --no-deps --no-compile --no-index --target "$work/site" --python-version "$pyver" \
    --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "$work"/wheels/*.whl 2>&1 \
    | grep -v "^WARNING: Location\|^WARNING: Target directory" || true
mkdir -p "$out"
XZ_OPT=${XZ_OPT:--T0} tar -C "$work/site" -cJf "$out/site.tar.xz.tmp" .
mv "$out/site.tar.xz.tmp" "$out/site.tar.xz"
size=$(stat -c %s "$out/site.tar.xz")
echo "$out/site.tar.xz: $((size / 1024 / 1024)) MiB"
if (( size > 56 * 1024 * 1024 )); then
    echo "too large to carry with the working tree (64 MiB per device call)" >&2
    exit 1
fi
