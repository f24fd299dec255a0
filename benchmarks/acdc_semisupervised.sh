#!/usr/bin/env bash
# Issue #30: the semi-supervised comparison on the acdc profile, resumable (run a stage again after an
# interruption: finished runs are reused). Plan, grid and rule: benchmarks/README.md, "Issue #30".
#   bash benchmarks/acdc_semisupervised.sh pretrain    # the shared SP-Con pre-training (fold 0)
#   bash benchmarks/acdc_semisupervised.sh selection   # settings A, B, C: 1 labeled x splits 0-3, validation scans
#   bash benchmarks/acdc_semisupervised.sh select      # the committed rule on selection_scores.json -> selection.json / .md
#   bash benchmarks/acdc_semisupervised.sh verdict     # baseline + the two chosen: test scans, 1 x 8 and 2 x 4
#   bash benchmarks/acdc_semisupervised.sh repeats     # the verdict's runs that repeat selection runs: run-to-run noise
#   bash benchmarks/acdc_semisupervised.sh length      # baseline + the best at 400 / 1000 / 2000 iterations
#   bash benchmarks/acdc_semisupervised.sh report      # verdict results + length table and plot into the results
#   bash benchmarks/acdc_semisupervised.sh arms        # if the gain shrinks with length: L0 and the arms, validation scans
#   bash benchmarks/acdc_semisupervised.sh choose-arm  # the committed rule over the arms -> arms.json / .md
#   bash benchmarks/acdc_semisupervised.sh fix         # if an arm won: the best method with it at 400 / 2000, test scans
#   bash benchmarks/acdc_semisupervised.sh all         # selection, select, verdict, repeats, length, report, arms, choose-arm, fix, report
# A stage whose results are committed under benchmarks/results/acdc_semisupervised is not run again (a new
# checkout has no run folders).
# Working folders under quality_runs/acdc_semi (SPCL_QUALITY_DIR to move it); each stage appends to
# benchmarks/results/acdc_semisupervised/progress.log (SPCL_RESULTS_DIR to move it). SPCL_JOBS (default 2)
# trainings at once. Runs that take hours should use a checkout of their own, fixed at one commit, so
# that edits to the working tree do not change the trainers between runs (benchmarks/README.md, "Issue #30").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(realpath -m "${SPCL_QUALITY_DIR:-quality_runs/acdc_semi}")
spcl=${SPCL_NNUNET:-.venv/bin/spcl_nnunet}
python=${SPCL_PYTHON:-.venv/bin/python}
out=${SPCL_RESULTS_DIR:-benchmarks/results/acdc_semisupervised}
schedules=$PWD/benchmarks/schedules
jobs=${SPCL_JOBS:-2}
export nnUNet_raw=$root/nnUNet_raw nnUNet_preprocessed=$root/nnUNet_preprocessed
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$out"
[ -d "$nnUNet_raw/Dataset910_SyntheticACDC" ] || "$spcl" synthetic -d 910 --profile acdc | tail -2
log() { tee -a "$out/progress.log"; }

run_experiment() {   # workdir schedule [experiment arguments...]
    local workdir=$1 schedule=$2; shift 2
    echo "=== $workdir ($(date -u +%FT%TZ))" | log
    "$spcl" experiment -d 910 --schedule "$schedule" --device cpu --jobs "$jobs" --workdir "$root/$workdir" "$@" 2>&1 | log
}
# The stages' plans hold one training per line; each runs as an experiment of its own (--jobs 1) on a core of
# its own, SPCL_JOBS at once, and its whole log is appended to progress.log when it finishes, so the
# "finished" line lands under its own "=== <folder>" header and a session's end loses only the unfinished runs.
read -r -a cores <<< "$("$python" -c "import os; print(*sorted(os.sched_getaffinity(0)))")"
declare -A busy=()   # slot -> pid
run_on_a_free_core() {   # workdir schedule [experiment arguments...]
    local workdir=$1 schedule=$2 slot done_pid; shift 2
    while [ "${#busy[@]}" -ge "$jobs" ]; do
        wait -n -p done_pid || true
        for slot in "${!busy[@]}"; do [ "${busy[$slot]}" != "$done_pid" ] || unset "busy[$slot]"; done
    done
    for ((slot = 0; slot < jobs; slot++)); do [ -n "${busy[$slot]:-}" ] || break; done
    [[ " $* " != *"-pretrained "* ]] || set -- "$@" --pretraining-from "$root/pretraining_home/pretraining"
    local tmp="$root/.run_$slot.log"
    echo "=== $workdir ($(date -u +%FT%TZ))" > "$tmp"
    (
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE taskset -c "${cores[slot % ${#cores[@]}]}" \
            "$spcl" experiment -d 910 --schedule "$schedule" --device cpu --jobs 1 --workdir "$root/$workdir" "$@" \
            >> "$tmp" 2>&1
        status=$?
        flock 9 && cat "$tmp" >> "$out/progress.log"
        exit "$status"
    ) 9> "$root/.progress.lock" &
    busy[$slot]=$!
    # the first run of a folder prepares the dataset (nnU-Net's planning): the next one starts once it trains
    until grep -q "started " "$tmp" || ! kill -0 "${busy[$slot]}" 2>/dev/null; do sleep 5; done
}
pretrain() { run_experiment pretraining_home "$schedules/acdc_semi_a.json" --methods spcon --labeled 1 --splits 0 --pretrain-only; }
experiment() {       # the same, with the shared SP-Con pre-training where a method starts from it
    local workdir=$1 schedule=$2; shift 2
    if [[ " $* " == *"-pretrained "* ]]; then
        pretrain   # reused when finished
        run_experiment "$workdir" "$schedule" --pretraining-from "$root/pretraining_home/pretraining" "$@"
    else
        run_experiment "$workdir" "$schedule" "$@"
    fi
}

case "${1:-}" in
    pretrain)
        pretrain ;;
    all)   # every stage in order; run it again after an interruption
        for stage in selection select verdict repeats length report arms choose-arm fix report; do bash "$0" "$stage"; done ;;
    choose-arm)   # only where the arms ran
        [ ! -s "$root/arms.plan" ] || "$python" benchmarks/semisupervised_selection.py --root "$root" --out "$out" --choose-arm | log ;;
    selection)
        sel=(--labeled 1 --splits 0 1 2 3 --evaluate validation)
        collect() { "$python" benchmarks/semisupervised_selection.py --root "$root" --out "$out" --collect "$1" | log; }
        stored() { "$python" -c "import json,sys; sys.exit('$1' not in json.load(open('$out/selection_scores.json'))['settings'])" 2>/dev/null; }
        # a setting whose scores are committed (selection_scores.json) is not run again
        stored A || { experiment selection_a "$schedules/acdc_semi_a.json" "${sel[@]}" \
            --methods baseline mean-teacher spcon-mt spcon-mt-pretrained fixmatch fixmatch-pretrained; collect A; }
        stored B || { experiment selection_b "$schedules/acdc_semi_b.json" "${sel[@]}" \
            --methods mean-teacher spcon-mt fixmatch; collect B; }
        stored C || { experiment selection_c "$schedules/acdc_semi_c.json" "${sel[@]}" \
            --methods mean-teacher fixmatch; collect C; } ;;
    select)
        "$python" benchmarks/semisupervised_selection.py --out "$out" --root "$root" | log ;;
    report)
        "$python" benchmarks/semisupervised_selection.py --root "$root" --out "$out" --report | log ;;
    verdict|repeats|length|arms|fix)
        [ -f "$out/selection.json" ] || { echo "run the selection and 'select' first" >&2; exit 2; }
        "$python" benchmarks/semisupervised_selection.py --root "$root" --out "$out" --plan "$1" > "$root/$1.plan"
        ! grep -q -- '-pretrained' "$root/$1.plan" || pretrain   # before the runs that share it
        while read -r workdir schedule args; do
            [ -n "$workdir" ] || continue
            if [ "$workdir" = share ]; then   # "share FROM TO [METHOD]": the finished runs of FROM reused in TO
                wait; busy=()   # every run before it has finished (and its core is free again)
                # shellcheck disable=SC2086
                "$python" benchmarks/semisupervised_selection.py --root "$root" --out "$out" --share-runs "$schedule" $args | log
                continue
            fi
            # shellcheck disable=SC2086
            run_on_a_free_core "$workdir" "$schedules/$schedule" $args
        done < "$root/$1.plan"
        wait
        [ "$1" != repeats ] || "$python" benchmarks/semisupervised_selection.py --root "$root" --out "$out" --repeats | log ;;
    *) echo "usage: $0 pretrain|selection|select|verdict|repeats|length|report|arms|choose-arm|fix|all" >&2; exit 2 ;;
esac
