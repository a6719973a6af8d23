#!/usr/bin/env bash
# The GPU rows of the speed comparison, prepared to run as one call on a lent GPU machine.
#
#   bash benchmarks/gpu_rows.sh --stage    # here, once: data and wheels into ignored folders
#   bash benchmarks/gpu_rows.sh            # there: run(command=..., carry=[".devdata", ".whl"])
#
# --stage copies TikTok, Baby and Sports from ../shared/data into .devdata/ (13 MB; the machine
# sees only the repository) and downloads the faiss-cpu wheel for the machine's Python 3.12 into
# .whl/ (its image has PyTorch and PyG, not faiss), both listed in .git/info/exclude.
#
# The run writes to $OUT (the device tool's folder that comes back; benchmarks/results elsewhere):
#   speed_cuda_three.{md,json}: full training epochs on the GPU at TikTok, Baby and Sports,
#   DHMRec with the exact KL (kl_align=true) and the sampled one (kl_align=1024), FREEDOM and
#   LGMRec, one round, each model in a fresh process (about 6 minutes on an H100 by the CPU
#   figures and the earlier Baby row; set ROUNDS=2 where the lease allows).
# Not here: faiss-gpu KNN at a million items. The machine's image has no faiss and faiss-gpu's
# wheels need CUDA 12 libraries larger than one call may carry; knn_graph runs its exact search
# with faiss-cpu there, on the machine's 16 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--stage" ]]; then
    mkdir -p .git/info .devdata .whl
    for entry in /.devdata/ /.whl/; do
        grep -qxF "$entry" .git/info/exclude 2>/dev/null || echo "$entry" >> .git/info/exclude
    done
    for name in tiktok baby sports; do
        rm -rf ".devdata/$name" && cp -r "../shared/data/$name" ".devdata/$name"
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "faiss-cpu==1.15.1"
    du -sh .devdata .whl
    exit 0
fi

OUT="${OUT:-benchmarks/results}"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, faiss; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, faiss.__version__)"
python3 -m benchmarks.speed --device cuda --datasets tiktok,baby,sports \
    --models dhmrec_exact,dhmrec_s1024,freedom,lgmrec \
    --variant dhmrec_exact=dhmrec:kl_align=true --variant dhmrec_s1024=dhmrec:kl_align=1024 \
    --repeats "${ROUNDS:-1}" --threads 4 --timeout 150 --data-root .devdata --out "$OUT" --name speed_cuda_three
