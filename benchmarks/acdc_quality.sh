#!/usr/bin/env bash
# The CPU quality runs on the acdc synthetic profile (issue #8), resumable:
#   bash benchmarks/acdc_quality.sh calibration   # scratch baseline, 1/2/4 labeled x 3 splits
#   bash benchmarks/acdc_quality.sh measurement   # + spcon, contrastive, mean-teacher, spcon-mt at 1/2 labeled
#   bash benchmarks/acdc_quality.sh compared      # + the compared methods of issue #10 at 1 labeled
#   bash benchmarks/acdc_quality.sh projector-last-conv   # spcon with the projector before the last norm
#                                                          # (its own folder: projector_last_conv/)
# Both write into one experiment folder (the tables cover every finished run in it), by default
# quality_runs/acdc (SPCL_QUALITY_DIR to move it; nnU-Net's raw and preprocessed folders live there
# too). Run again after an interruption: finished steps are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(realpath -m "${SPCL_QUALITY_DIR:-quality_runs/acdc}")
spcl=${SPCL_NNUNET:-.venv/bin/spcl_nnunet}
export nnUNet_raw=$root/nnUNet_raw nnUNet_preprocessed=$root/nnUNet_preprocessed
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed"
[ -d "$nnUNet_raw/Dataset910_SyntheticACDC" ] || "$spcl" synthetic -d 910 --profile acdc | tail -2
case "${1:-}" in
    calibration) methods=(baseline); labeled=(1 2 4) ;;
    measurement) methods=(baseline spcon contrastive mean-teacher spcon-mt); labeled=(1 2) ;;
    compared) methods=(baseline mixup adversarial discrete-mi global-local); labeled=(1) ;;
    projector-last-conv) methods=(spcon); labeled=(1 2)
        schedule=$PWD/benchmarks/schedules/quality_projector_last_conv.json; workdir=$root/projector_last_conv ;;
    *) echo "usage: $0 calibration|measurement|compared|projector-last-conv" >&2; exit 2 ;;
esac
"$spcl" experiment -d 910 --methods "${methods[@]}" --labeled "${labeled[@]}" --splits 0 1 2 \
    --schedule "${schedule:-quality}" --device cpu --workdir "${workdir:-$root/experiment}"
