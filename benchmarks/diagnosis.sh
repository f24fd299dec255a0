#!/usr/bin/env bash
# Issue #19's controlled diagnosis on the CPU (acdc synthetic profile, 1 labeled scan x splits 0-3),
# scored on the fold table's validation scans only (--evaluate validation: nnU-Net's final
# validation of each run; no test scan is predicted). Arms and selection rule: benchmarks/README.md,
# "Issue #19: arms and selection rule". Resumable: run a stage again after an interruption.
#   bash benchmarks/diagnosis.sh pretrain        # SP-Con, L_con and SimCLR pre-trainings, shared by the arms
#   bash benchmarks/diagnosis.sh a probe b c d e views60 iters4x   # the arms, in that order
#   bash benchmarks/diagnosis.sh verdict         # after the choice: baseline and spcon (default recipe) on the
#                                                # test scans, 1 labeled x splits 0-7 and 2 labeled x splits 0-3
# Each arm is its own experiment folder under $root/arms/<arm> (tables: validation_results.*);
# every arm but the pre-training ones takes the shared pre-trainings through --pretraining-from.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(realpath -m "${SPCL_DIAGNOSIS_DIR:-quality_runs/acdc_diagnosis}")
spcl=${SPCL_NNUNET:-.venv/bin/spcl_nnunet}
schedules=$PWD/benchmarks/schedules
export nnUNet_raw=$root/nnUNet_raw nnUNet_preprocessed=$root/nnUNet_preprocessed
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}     # two trainings share 2 cores (benchmarks/README.md, CI time)
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed"
[ -d "$nnUNet_raw/Dataset910_SyntheticACDC" ] || "$spcl" synthetic -d 910 --profile acdc | tail -2
common=(-d 910 --labeled 1 --splits 0 1 2 3 --device cpu --jobs 2 --evaluate validation)
shared=(--pretraining-from "$root/pretraining_home/pretraining")
[ $# -gt 0 ] || { echo "usage: $0 pretrain|a|probe|b|c|d|e|views60|iters4x|verdict ..." >&2; exit 2; }
for stage in "$@"; do
    echo "=== diagnosis stage $stage ($(date -u +%FT%TZ))"
    case "$stage" in
        pretrain) "$spcl" experiment -d 910 --methods spcon contrastive simclr --pretrain-only --schedule diagnosis \
                      --device cpu --jobs 2 --workdir "$root/pretraining_home" ;;
        a) "$spcl" experiment "${common[@]}" "${shared[@]}" --methods baseline spcon --schedule diagnosis \
               --workdir "$root/arms/a" ;;
        probe) "$spcl" experiment "${common[@]}" "${shared[@]}" --methods baseline spcon contrastive simclr \
                   --schedule "$schedules/diagnosis_probe.json" --workdir "$root/arms/probe" ;;
        b|c|d) "$spcl" experiment "${common[@]}" "${shared[@]}" --methods spcon \
                   --schedule "$schedules/diagnosis_$stage.json" --workdir "$root/arms/$stage" ;;
        e) "$spcl" experiment "${common[@]}" "${shared[@]}" --methods baseline spcon \
               --schedule "$schedules/diagnosis_e.json" --workdir "$root/arms/e" ;;
        views60|iters4x) "$spcl" experiment "${common[@]}" --methods spcon \
               --schedule "$schedules/diagnosis_$stage.json" --workdir "$root/arms/$stage" ;;
        verdict) # the chosen recipe (the trainers' defaults now) and the baseline on the TEST scans; the
            # shared SP-Con pre-training when it is there, else the verdict's own (same schedule)
            own=()
            [ -f "$root/pretraining_home/pretraining/SPConPretrainTrainer/Dataset910_SyntheticACDC/SPConPretrainTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.pth" ] \
                && [ ! -d "$root/transfer/pretraining" ] && own=("${shared[@]}")
            for labeled_splits in "1:0 1 2 3 4 5 6 7" "2:0 1 2 3"; do
                # shellcheck disable=SC2086
                "$spcl" experiment -d 910 --labeled "${labeled_splits%%:*}" --splits ${labeled_splits#*:} \
                    --device cpu --jobs 2 "${own[@]}" --methods baseline spcon \
                    --schedule "$schedules/acdc_transfer.json" --workdir "$root/transfer"
            done ;;
        *) echo "unknown stage $stage" >&2; exit 2 ;;
    esac
done
