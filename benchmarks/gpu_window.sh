#!/usr/bin/env bash
# One GPU window, as the device tool runs it from the repository root:
#     bash benchmarks/gpu_window.sh "$OUT"        (carry: .data and .whl)
# 1. the harvest of the paper profile, 480 s of budget, its bundle and log into OUT;
# 2. CKA against pytorch-cka on the GPU (benchmarks/cka_peers.py), at most 60 s, into OUT.
# The GPU machine has torch but not pytorch-cka: its wheel travels in .whl (see README).
set -u
out=${1:?usage: bash benchmarks/gpu_window.sh OUT_DIR}
export PYTHONUNBUFFERED=1 REPSIM_DATA=.data/cifar10-jpeg.tar.gz
python3 -m repsim.harvest --profile paper --budget "${HARVEST_BUDGET:-480}" --out "$out"
status=$?
if ls .whl/pytorch_cka-*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps --target /tmp/peers .whl/*.whl; then
    PYTHONPATH=/tmp/peers timeout 60 python3 -m benchmarks.cka_peers --device cuda --peers pytorch-cka \
        > "$out/cka-peers-gpu.txt" 2>&1 || echo "cka_peers did not finish (see cka-peers-gpu.txt)"
fi
exit $status
