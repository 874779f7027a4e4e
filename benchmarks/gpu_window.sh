#!/usr/bin/env bash
# One call of a GPU window, as the device tool runs it from the repository root:
#     HARVEST_KEEP=/tmp/repsim-lease bash benchmarks/gpu_window.sh "$OUT"   (carry: .data and .whl)
# 1. the harvest of the paper profile, 540 s of budget, its bundle and log into OUT;
# 2. CKA against pytorch-cka on the GPU (benchmarks/cka_peers.py), only in the time left
#    before the call's end (590 s from the script's start: a command has 600).
# HARVEST_KEEP names a folder outside OUT (which is emptied before each call) where the
# bundles stay on the machine: a second call on the still-warm machine continues the
# plan from them (README, "A GPU window, step by step").
# The GPU machine has torch but not pytorch-cka: its wheel travels in .whl (see README).
# The tests rehearse this very script on the CPU through the same variables:
#     HARVEST_PROFILE (paper), HARVEST_BUDGET (540), HARVEST_DEVICE (auto), HARVEST_KEEP (OUT),
#     WINDOW_SECONDS (590), REPSIM_DATA (.data/cifar10-jpeg.tar.gz), PYTHON (python3).
set -u
out=${1:?usage: bash benchmarks/gpu_window.sh OUT_DIR}
keep=${HARVEST_KEEP:-$out}
mkdir -p "$out" "$keep"
export PYTHONUNBUFFERED=1 REPSIM_DATA=${REPSIM_DATA:-.data/cifar10-jpeg.tar.gz}
python=${PYTHON:-python3}
"$python" -m repsim.harvest --profile "${HARVEST_PROFILE:-paper}" --budget "${HARVEST_BUDGET:-540}" \
    --device "${HARVEST_DEVICE:-auto}" --out "$keep" 2>&1 | tee "$out/harvest-stdout-$(date +%H%M%S).txt"
status=${PIPESTATUS[0]}
if [[ "$keep" != "$out" ]]; then
    cp "$keep"/bundle-*.zip "$keep"/harvest-*.log "$out"/ 2>/dev/null
fi
left=$(( ${WINDOW_SECONDS:-590} - SECONDS ))
if (( left < 20 )); then
    echo "no time left for the peer benchmark (${left} s before the call's end)"
elif ls .whl/pytorch_cka-*.whl >/dev/null 2>&1 && "$python" -m pip install -q --no-index --no-deps --target /tmp/peers .whl/pytorch_cka-*.whl; then
    PYTHONPATH=/tmp/peers timeout "$(( left - 5 ))" "$python" -m benchmarks.cka_peers --device cuda --peers pytorch-cka \
        > "$out/cka-peers-gpu.txt" 2>&1 || echo "cka_peers did not finish in ${left} s (see cka-peers-gpu.txt)"
else
    echo "no pytorch-cka wheel in .whl: the peer benchmark is skipped"
fi
echo "window script: ${SECONDS} s, harvest exit status ${status}"
exit "$status"
