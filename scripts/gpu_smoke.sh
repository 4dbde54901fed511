#!/usr/bin/env bash
# GPU smoke test of the real-engine testbed (backend=testbed-gpu, upstream vLLM), one line per check, < 8 min:
#   gpu / stack / checkpoints   what the machine has;
#   two_models_one_gpu          two tiny models prewarmed on GPU 0 (sleeping engines, weights awake), a request
#                               wakes one (KV cache), the other is evicted (its process exited before the wake);
#   tp2                         a tensor-parallel start over GPUs 0 and 1 (SKIP with one GPU);
#   nvml                        NVML samples of the serving engine's device memory;
#   replay60                    a 60-second open-loop replay over three tiny models.
# Needs a CUDA GPU and, in the venv: vLLM built for CUDA (upstream, with sleep mode), torch, transformers and the
# gpu extra:  pip install vllm && pip install -e '.[gpu]'   (tiny random-weight checkpoints are made locally).
# FAKE=1 runs the same checks against stub engines on fake GPUs (backend=testbed-stub-gpu; no GPU, ~2 min).
# Engine logs of a failed check: outputs/gpu-smoke/<check>/logs. Extra arguments go to warmserve.testbed.gpu_smoke.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT_S=480   # the whole smoke test stays under 8 minutes
check() { printf '%-20s %s\n' "$1" "$2"; }

if [ "${FAKE:-0}" = 1 ]; then
  exec timeout "$LIMIT_S" "$PY" -m warmserve.testbed.gpu_smoke --fake --gpus 2 "$@"
fi
if ! command -v nvidia-smi >/dev/null; then check gpu "FAIL nvidia-smi not found (FAKE=1 runs without a GPU)"; exit 1; fi
GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
MEM_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0 | tr -d ' ')
check gpu "PASS $GPUS GPU(s), $(nvidia-smi --query-gpu=name --format=csv,noheader -i 0), $MEM_MIB MiB each"
if ! VER=$("$PY" -c 'import pynvml, transformers, vllm; print(vllm.__version__)' 2>/dev/null); then
  check stack "FAIL needs vllm (CUDA build), transformers and nvidia-ml-py: pip install vllm && pip install -e '.[gpu]'"
  exit 1
fi
check stack "PASS vllm $VER, nvidia-ml-py"
if "$PY" -m warmserve.testbed.tiny_models --out .cache/models --sizes tiny-s tiny-m >/dev/null 2>&1; then
  check checkpoints "PASS .cache/models/tiny-s, tiny-m (random weights)"
else
  check checkpoints "FAIL python -m warmserve.testbed.tiny_models --out .cache/models --sizes tiny-s tiny-m"; exit 1
fi
USE=$(( GPUS >= 2 ? 2 : 1 ))
# the engines are sized against the device's real memory, not the profile's 80 GiB
timeout "$LIMIT_S" "$PY" -m warmserve.testbed.gpu_smoke --gpus "$USE" --gpu-mem-bytes $(( MEM_MIB * 1048576 )) "$@"
