#!/usr/bin/env bash
# For a GPU machine that is offline (no package index: hospital clusters are often air-gapped) and
# has a PyTorch environment (PyTorch, numpy, scipy, scikit-image, pandas, matplotlib) but not
# nnU-Net. Run this on a machine that has the package index: it downloads the packages nnU-Net
# needs beyond that environment as binary wheels for the offline machine's Python and platform
# (CPython 3.12, x86-64 Linux unless told otherwise), installs them into one folder without their
# dependencies, and packs that folder as .gpu_site/site.tar.xz (the wheels come to ~70 MB, SimpleITK
# alone 53 MB; packed with xz, 37 MiB). Copy the checkout with .gpu_site (.gitignore keeps it out of
# git) to the offline machine; gpu_env.sh unpacks it there for gpu_experiment.sh and gpu_check.sh.
#   bash benchmarks/gpu_site.sh && ls -la .gpu_site
# SPCL_GPU_PYTHON_VERSION: the offline machine's Python (default 3.12); SPCL_GPU_SITE_OUT: the
# output folder (default .gpu_site); SPCL_GPU_SITE_MAX_MIB: fail when the packed file is larger
# (for a transfer with a size limit; unset: no check).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${SPCL_GPU_SITE_OUT:-.gpu_site}
# the offline machine's Python (another version also for a local dry run of gpu_experiment.sh)
pyver=${SPCL_GPU_PYTHON_VERSION:-3.12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# binary wheels for CPython $pyver, x86-64 Linux (no dependencies: the PyTorch environment has the rest)
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
if [ -n "${SPCL_GPU_SITE_MAX_MIB:-}" ] && (( size > SPCL_GPU_SITE_MAX_MIB * 1024 * 1024 )); then
    echo "$out/site.tar.xz is larger than SPCL_GPU_SITE_MAX_MIB=$SPCL_GPU_SITE_MAX_MIB MiB" >&2
    exit 1
fi
