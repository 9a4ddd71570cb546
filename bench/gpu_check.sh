#!/usr/bin/env bash
# The trainer on a GPU machine without network (PyTorch, JAX, OpenCV, pandas, scikit-learn,
# typer, tqdm, joblib and matplotlib installed there; Keras, namex and optree brought as
# wheels), in about 5 minutes: `train fit` + `train evaluate` with the JAX and PyTorch
# backends on a generated folder of 224 px JPEGs, then bench/trainer_gpu.py's throughput.
#
#   bash bench/gpu_check.sh --fetch   # here, with network: the wheels, into .whl/ (Python 3.12)
#   bash bench/gpu_check.sh           # there, from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
if [ "${1:-}" = "--fetch" ]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" keras==3.15.1 namex==0.1.0 optree==0.20.0
    exit
fi
LOG=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$LOG") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, torch, keras; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, '| keras', keras.__version__)"

WORK=/tmp/gpu-check
rm -rf "$WORK"
python3 - "$WORK" <<'PY'
import sys
from pathlib import Path
import numpy as np
from bench.corpus import photo
from balancer.common.imageio import cv2
rng = np.random.default_rng(0)
for split, n in (("train", 96), ("test", 16)):
    for k in range(4):
        for i in range(n // (k + 1)):  # imbalanced, 4 classes
            f = Path(sys.argv[1]) / split / f"class_{k}" / f"{i:04d}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(f), photo(rng, 224, 256), [cv2.IMWRITE_JPEG_QUALITY, 90])
PY
for backend in jax torch; do
    echo "== train fit + evaluate, $backend backend, efficientnet-b0 224 px, from scratch"
    start=$(date +%s)
    python3 -m trainer --backend $backend fit "$WORK/train" --out "$WORK/run-$backend" --weights none \
        --epochs 3 --batch 64 --lr 1e-3 --quiet --json > "$WORK/fit-$backend.json"
    python3 -m trainer --backend $backend evaluate "$WORK/run-$backend" "$WORK/test" --json > "$WORK/eval-$backend.json"
    python3 - "$WORK" $backend <<'PY'
import json, sys
fit = json.load(open(f"{sys.argv[1]}/fit-{sys.argv[2]}.json"))
ev = json.load(open(f"{sys.argv[1]}/eval-{sys.argv[2]}.json"))
print(f"  backend {fit['backend']}, gpus {fit['gpus']}, {fit['precision']}, {fit['epochs_run']} epochs, "
      f"validation accuracy {fit['accuracy']:.3f}; test accuracy {ev['accuracy']:.3f}, macro F1 {ev['macro_f1']:.3f}")
PY
    echo "  $(( $(date +%s) - start )) s"
done
echo "== throughput (bench/trainer_gpu.py)"
python3 bench/trainer_gpu.py --backend jax --images 4096 --batch 128 --steps 30
python3 bench/trainer_gpu.py --backend torch --images 4096 --batch 128 --steps 10 --jit off
python3 bench/trainer_gpu.py --backend torch --images 4096 --batch 128 --steps 10 --jit on
