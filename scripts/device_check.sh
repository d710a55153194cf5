#!/usr/bin/env bash
# The one prepared GPU check: the CUDA-graph tests, then bench_meta and bench_adapt with every variant side by side.
# Any session lent a GPU runs this first (then, with the minutes left, a campaign segment). On the device tool:
#
#   here, once:   echo /.whl/ >> .git/info/exclude
#                 for p in basicsr==1.4.2 mmengine addict yapf lmdb termcolor; do
#                   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#                     -d .whl "$p" || python3 -m pip download --no-deps -d .whl "$p"; done
#   device run:   command "bash scripts/device_check.sh", carry [".whl"], timeout_s 540
#
# Results land in $OUT (device_check.log, bench_meta.txt, bench_adapt.txt, bench_adapt.json); paste the tables into
# README.md and the model card from these files, never by hand.
set -uo pipefail
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo "== CUDA-graph tests"
  timeout 200 python3 -m pytest tests/test_cuda_graphs.py tests/test_learned_inner_lr.py -q -p no:cacheprovider -rs
  echo "== bench_meta (official sizes)"
  timeout 150 python3 scripts/bench_meta.py --device cuda --iters 5 | tee "$OUT/bench_meta.txt"
  echo "== bench_adapt (Set5 g20 + skimage, no ZSSR)"
  timeout 150 python3 scripts/bench_adapt.py --device cuda --no-zssr --json "$OUT/bench_adapt.json" \
    | tee "$OUT/bench_adapt.txt"
} 2>&1 | tee "$OUT/device_check.log"
