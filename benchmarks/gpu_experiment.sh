#!/usr/bin/env bash
# The acdc-profile experiment on one GPU (issue #8): baseline, spcon, mean-teacher and spcon-mt at
# 1 labeled scan x 3 splits, --schedule gpu, --device cuda, trainings run 8 at a time (13 trainings:
# one shared pre-training + 12; two waves on one GPU).
# The compared methods of issue #10 on the same schedule (the global + local chain: two pre-trainings,
# then 3 fine-tunings; 14 jobs: the runs that wait for a pre-training hold a slot without training):
#   SPCL_GPU_METHODS="mixup adversarial discrete-mi global-local" SPCL_GPU_JOBS=14 bash benchmarks/gpu_experiment.sh
#
# For an offline GPU machine (no package index) that has a PyTorch environment (+ numpy, scipy,
# scikit-image, pandas, matplotlib) but not nnU-Net:
#   online:   bash benchmarks/gpu_site.sh          # packs nnU-Net & co. into .gpu_site/site.tar.xz
#   offline:  bash benchmarks/gpu_experiment.sh    # in the checkout, copied there with .gpu_site
# On a machine where nnU-Net and this package are installed, run `spcl_nnunet experiment` directly.
# Results (results.md/.json/.csv, learning_curve.png, the commands' logs) go to $OUT (default
# ./gpu_experiment_out). SPCL_GPU_BUDGET_S (unset: no limit) stops the experiment after that many
# seconds, for a machine held for a fixed time (a batch job's wall time): the experiment is
# resumable, so a second run in the same working folder continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${OUT:-$repo/gpu_experiment_out}
budget=${SPCL_GPU_BUDGET_S:-}
# a dry run on a CPU machine: SPCL_GPU_SCHEDULE=smoke SPCL_GPU_DEVICE=cpu SPCL_GPU_JOBS=2
schedule=${SPCL_GPU_SCHEDULE:-gpu} device=${SPCL_GPU_DEVICE:-cuda} jobs=${SPCL_GPU_JOBS:-8}
read -r -a methods <<< "${SPCL_GPU_METHODS:-baseline spcon mean-teacher spcon-mt}"
mkdir -p "$out"
start=$(date +%s)

# --- nnU-Net & co. from the packed site (benchmarks/gpu_env.sh) -------------------------------
source "$repo/benchmarks/gpu_env.sh"

# --- data: the acdc profile, planned and preprocessed by nnU-Net ---------------------------------
work=${SPCL_GPU_WORKDIR:-/tmp/spcl_gpu_experiment}
export nnUNet_raw=$work/nnUNet_raw nnUNet_preprocessed=$work/nnUNet_preprocessed
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-3} nnUNet_def_n_proc=${nnUNet_def_n_proc:-4}
# nnU-Net compiles the network on CUDA by default; each of the 13 short trainings would pay its
# compile time (tens of seconds), so this run trains uncompiled (nnUNet_compile=t to change that; the
# compiled path is the GPU check's business, issue #9)
export nnUNet_compile=${nnUNet_compile:-f}
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed"
[ -d "$nnUNet_raw/Dataset910_SyntheticACDC" ] || spcl_nnunet synthetic -d 910 --profile acdc | tail -3

# --- the experiment (resumable), stopped before the budget runs out when there is one -----------
limit=()
if [ -n "$budget" ]; then
    left=$(( budget - ($(date +%s) - start) ))
    limit=(timeout --signal=TERM --kill-after=20 "$(( left > 0 ? left : 1 ))")
fi
set +e
${limit[@]+"${limit[@]}"} spcl_nnunet experiment -d 910 \
    --methods "${methods[@]}" --labeled 1 --splits 0 1 2 \
    --schedule "$schedule" --device "$device" --jobs "$jobs" --workdir "$work/experiment" 2>&1 | tee "$out/experiment.log"
status=${PIPESTATUS[0]}
set -e
for f in results.md results.json results.csv learning_curve.png; do
    [ -f "$work/experiment/$f" ] && cp "$work/experiment/$f" "$out/"
done
# every log (nnU-Net's training logs with their epoch times, the commands' logs, progress plots) in one file
(cd "$work/experiment" && find . \( -name '*.log' -o -name 'training_log_*.txt' -o -name 'progress.png' \
    -o -name 'summary.json' -o -name 'run.json' -o -name 'experiment.json' \) -print0 \
    | tar --null -czf "$out/logs.tar.gz" -T -) || true
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then
    # a failed command: show the end of the logs that hold a traceback
    grep -rl --include='*.log' --include='training_log_*.txt' Traceback "$work/experiment" 2>/dev/null \
        | head -3 | while read -r log; do echo "=== $log"; tail -25 "$log"; done
fi
echo "experiment exit status $status after $(( $(date +%s) - start )) s (124: stopped at the budget; run again to resume)"
exit "$status"
