# Sourced by gpu_experiment.sh and gpu_check.sh (with $repo = checkout, $out = result folder) on an
# offline GPU machine without nnU-Net: nnU-Net & co. from the site that gpu_site.sh packed
# (.gpu_site/site.tar.xz, copied there with the checkout) on PYTHONPATH, with the checkout itself,
# and the console scripts the commands call (nnUNetv2_*, spcl_nnunet) as small wrappers on PATH;
# nothing is installed into the machine's Python. SPCL_GPU_SITE: where to unpack (default
# /tmp/spcl_site; an unpacked site there is reused).
site=${SPCL_GPU_SITE:-/tmp/spcl_site}
if [ ! -d "$site/nnunetv2" ]; then
    [ -f "$repo/.gpu_site/site.tar.xz" ] || { echo "missing .gpu_site/site.tar.xz: run benchmarks/gpu_site.sh here first" >&2; exit 2; }
    mkdir -p "$site" && tar -C "$site" -xJf "$repo/.gpu_site/site.tar.xz"
fi
export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
bin=$site/spcl_bin
mkdir -p "$bin"
while read -r name target; do
    printf '#!/bin/sh\nexec python3 -c "import sys; from %s import %s as f; sys.argv[0] = \\"%s\\"; sys.exit(f())" "$@"\n' \
        "${target%%:*}" "${target##*:}" "$name" > "$bin/$name"
    chmod +x "$bin/$name"
done <<'ENTRIES'
nnUNetv2_plan_and_preprocess nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:plan_and_preprocess_entry
nnUNetv2_train nnunetv2.run.run_training:run_training_entry
nnUNetv2_predict nnunetv2.inference.predict_from_raw_data:predict_entry_point
spcl_nnunet spcl_nnunet.cli:main
ENTRIES
export PATH="$bin:$PATH"
python3 -c "import torch, nnunetv2, SimpleITK; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$out/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$out/versions.txt" 2>/dev/null || true
