#!/usr/bin/env bash
# The GPU check (issue #9), for an offline one-GPU machine (no package index) that has a PyTorch
# environment but not nnU-Net:
#   online:   bash benchmarks/gpu_site.sh        # packs nnU-Net & co. into .gpu_site/site.tar.xz
#   offline:  bash benchmarks/gpu_check.sh       # in the checkout, copied there with .gpu_site
# 1. end-to-end smoke of every trainer on CUDA under nnU-Net's defaults (mixed precision, and
#    torch.compile, on by default on CUDA), --schedule smoke, through the real commands:
#    `spcl_nnunet experiment` (SP-Con pre-training -> fine-tuning with -pretrained_weights ->
#    nnUNetv2_predict -> nnU-Net's evaluation, and the scratch baseline), the contrastive
#    pre-training, the semi-supervised trainers (SP-Con + Mean Teacher from -pretrained_weights),
#    and --c on a finished baseline (loads its checkpoint and grad-scaler state on CUDA);
# 2. the three benchmarks with --device cuda.
# Every step's log, a PASS/FAIL line per step and the benchmark tables go to $OUT (default
# ./gpu_check_out); exit status = number of failed steps. Dry run on a CPU: SPCL_GPU_DEVICE=cpu
# (SPCL_GPU_SKIP_BENCH=1 leaves out the benchmarks, which take long there).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${OUT:-$repo/gpu_check_out}
device=${SPCL_GPU_DEVICE:-cuda}
mkdir -p "$out"
start=$(date +%s)
source "$repo/benchmarks/gpu_env.sh" || exit 2

work=${SPCL_GPU_WORKDIR:-/tmp/spcl_gpu_check}
export nnUNet_raw=$work/raw nnUNet_preprocessed=$work/preprocessed nnUNet_results=$work/results
export nnUNet_extTrainer=$repo/trainers SPCL_SCHEDULE=smoke
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-2} nnUNet_def_n_proc=${nnUNet_def_n_proc:-2}
unset nnUNet_compile     # nnU-Net's default: compiled on CUDA
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results" "$out/logs"
summary=$out/summary.txt
: > "$summary"
failures=0

step() {   # step NAME COMMAND...: run, time, record PASS/FAIL, show the log's end on failure
    local name=$1 t0=$(date +%s)
    shift
    if "$@" > "$out/logs/$name.log" 2>&1; then
        echo "PASS $name $(( $(date +%s) - t0 )) s" | tee -a "$summary"
    else
        echo "FAIL $name $(( $(date +%s) - t0 )) s (exit $?)" | tee -a "$summary"
        tail -25 "$out/logs/$name.log"
        failures=$((failures + 1))
    fi
}
train() { nnUNetv2_train 990 2d 0 -device "$device" "$@"; }
pre=$nnUNet_results/Dataset990_SyntheticCardiac/SPConPretrainTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.pth

step data bash -c "spcl_nnunet synthetic -d 990 --patients 8 && nnUNetv2_plan_and_preprocess -d 990 -c 2d && spcl_nnunet prepare -d 990"

# wave 1 (in parallel): pre-trainings and the scratch trainers
step experiment spcl_nnunet experiment -d 990 --methods baseline spcon --labeled 1 --splits 0 --schedule smoke \
    --device "$device" --workdir "$work/experiment" &
step pretrain train -tr SPConPretrainTrainer &
step contrastive-pretrain train -tr ContrastivePretrainTrainer &
step mean-teacher train -tr MeanTeacherTrainer &
step entropy-min train -tr EntropyMinTrainer &
step baseline train -tr SPConBaselineTrainer &
step mixup train -tr MixUpTrainer &
step adversarial train -tr AdversarialTrainer &
step discrete-mi train -tr DiscreteMITrainer &
wait
# wave 2: what needs a finished training of wave 1
step spcon-mt-pretrained train -tr SPConMeanTeacherTrainer -pretrained_weights "$pre" &
step finetune-pretrained train -tr SPConFinetuneTrainer -pretrained_weights "$pre" &
step baseline-continue train -tr SPConBaselineTrainer --c &
step local-contrastive train -tr LocalContrastivePretrainTrainer -pretrained_weights \
    "${pre/SPConPretrainTrainer/ContrastivePretrainTrainer}" &
step adversarial-continue train -tr AdversarialTrainer --c &
wait
ds=$nnUNet_raw/Dataset990_SyntheticCardiac
step predict-evaluate bash -c "nnUNetv2_predict -i $ds/imagesTs -o $work/pred -d 990 -c 2d -f 0 \
    -tr SPConFinetuneTrainer -device $device -npp 2 -nps 2 --disable_progress_bar && nnUNetv2_evaluate_folder \
    $ds/labelsTs $work/pred -djfile $work/pred/dataset.json -pfile $work/pred/plans.json -np 1 && python3 -c \
    \"import json; print('mean Dice', json.load(open('$work/pred/summary.json'))['foreground_mean']['Dice'])\""
grep -h "Dice" "$work/experiment/results.md" 2>/dev/null | head -3

# the benchmarks (tables in their logs)
[ "${SPCL_GPU_SKIP_BENCH:-0}" = 1 ] || {
step bench-loss python3 benchmarks/bench_loss.py --device "$device"
step bench-trainer python3 benchmarks/bench_trainer.py --device "$device" --batch-scans 8 --iters 20
step bench-semisupervised python3 benchmarks/bench_semisupervised.py --device "$device" --batch 16 --n-proc-da 4
}
for f in bench-loss bench-trainer bench-semisupervised; do cp "$out/logs/$f.log" "$out/$f.txt" 2>/dev/null; done
(cd "$out" && tar -czf logs.tar.gz logs && rm -rf logs)
echo "gpu_check: $failures failed step(s) after $(( $(date +%s) - start )) s" | tee -a "$summary"
exit "$failures"
