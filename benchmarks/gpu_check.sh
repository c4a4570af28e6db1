#!/usr/bin/env bash
# The prepared GPU measurement for a lent device machine (issue 12, target 5), <= 5 minutes.
# That machine has torch, torchvision, numpy, pillow, onnxruntime, tokenizers and typer but
# not open_clip, faiss or ftfy, and cannot download: carry them as wheels. Here, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform \
#     manylinux2014_x86_64 -d .whl open_clip_torch faiss-cpu ftfy wcwidth
#   echo /.bench/ >> .git/info/exclude; mkdir -p .bench/photos   # the 24 smallest real
#   (cd /tmp/clipsearch-bench/photos && cp $(ls -S | tail -24) /work/main/.bench/photos/)
#   (photos, ~11 MB: with the wheels they must stay under the 64 MiB a call carries)
# Then: run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".bench"], timeout_s=420)
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export CLIPSEARCH_BENCH=/tmp/bench CLIPSEARCH_CACHE=/tmp/bench/cache
mkdir -p /tmp/bench && cp -r .bench/photos /tmp/bench/photos
timeout 300 python3 benchmarks/bench_gpu.py --photos 400 2>&1 | tee "${OUT:-/tmp}/gpu.txt"
