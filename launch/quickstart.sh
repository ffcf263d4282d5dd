#!/usr/bin/env bash
# README's first command: fresh venv, install, pre-train `tiny` on the built-in offline corpus
# (CPU), then ask the trained discriminator which tokens of a sentence look replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
WORKDIR="${WORKDIR:-runs/quickstart}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
source "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0  # the CPU build; pinned so nothing pulls CUDA wheels
python -m pip install -q -r requirements-dev.txt  # runtime + tests (README's second command)
python -m pip install -q --no-deps -e .

# CPU run: keep JAX from loading libtpu (a dev requirement, for the compile check), which
# prints TPU start-up warnings on a machine without TPU chips.
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"

echo "== pre-training tiny on builtin:pydocs (CPU) into $WORKDIR"
python -m electra_jax.pretrain --config=configs/pretrain.py:tiny --workdir="$WORKDIR" "$@"

echo "== detect: which tokens look replaced?"
python -m electra_jax.detect --checkpoint="$WORKDIR/export" \
  --text="the function returns a new list of strings sorted by their length"

echo "== outputs"
echo "  metrics:     $WORKDIR/metrics.jsonl (TensorBoard: $WORKDIR/tensorboard)"
echo "  checkpoints: $WORKDIR/checkpoints (rerun the same command to resume)"
echo "  model:       $WORKDIR/export (for detect, fine-tuning, convert --to=hf)"
