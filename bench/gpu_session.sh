#!/usr/bin/env bash
# The GPU measurements issue 7 still needs, in stages that each fit one 10-minute device call
# (estimates from compile times of 70-90 s per variant on an H100). All five take more than one
# session's 30 minutes of device time: run `profile` and `small` first, the rest next time.
#
#   bash bench/gpu_session.sh profile    # where small's and base's step time goes (~6 min)
#   bash bench/gpu_session.sh small      # small 128x128 vs the peer: K and PRNG variants (~9 min)
#   bash bench/gpu_session.sh base256    # base at the paper's 256x512 with --remat (~5 min)
#   bash bench/gpu_session.sh base64     # base 64x512 vs the eager and compiled peer (~6 min)
#   bash bench/gpu_session.sh flags      # small under XLA flag variants (command buffers) (~6 min)
#   bash bench/gpu_session.sh attention  # cuDNN attention checked, then timed; packing (~7 min)
#
# Logs and JSON go to $OUT (the device tool's return folder; /tmp/gpu_session elsewhere).
# Stages print as they go (PYTHONUNBUFFERED) so a call cut off at its limit still returns
# the lines printed up to then; compare.py rewrites its --json after every row, and a variant
# that fails (out of memory) is reported and skipped. compare.py --write appends rows to
# $OUT/BENCHMARKS.md at the end of a stage: copy them back from there.
set -uo pipefail
case "${1:-}" in
profile | small | base256 | base64 | flags | attention) ;;
*)
    echo "usage: bash bench/gpu_session.sh profile|small|base256|base64|flags|attention" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"

status=0
run() {  # run NAME COMMAND...: tee the output to $OUT/NAME.log; a failure sets the exit status
    local name=$1
    shift
    echo "== $name: XLA_FLAGS=${XLA_FLAGS:-} $*" | tee "$OUT/$name.log"
    "$@" 2>&1 | tee -a "$OUT/$name.log" || status=1
}

compare() {
    run "$1" python bench/compare.py --write --benchmarks-file="$OUT/BENCHMARKS.md" \
        --json="$OUT/$1.json" "${@:2}"
}

case "${1:-}" in
profile)
    # Kernels inside command buffers may carry no HLO op in the trace: the per-component
    # attribution comes from runs without them; the default run gives wall and busy time.
    run profile_small python bench/profile_step.py --config=configs/pretrain.py:small \
        --steps=20 --top=10 --json="$OUT/profile_small.json"
    XLA_FLAGS=--xla_gpu_enable_command_buffer= run profile_small_nocb python \
        bench/profile_step.py --config=configs/pretrain.py:small --steps=20 --top=25 \
        --json="$OUT/profile_small_nocb.json"
    XLA_FLAGS=--xla_gpu_enable_command_buffer= run profile_base64_nocb python \
        bench/profile_step.py --config=configs/pretrain.py:base --config.batch_size=64 --steps=5 \
        --top=25 --json="$OUT/profile_base64_nocb.json"
    ;;
small)
    compare small --sizes=small --steps=40 --warmup=5 --repeats=3 --window=10 \
        --steps-per-call=1,4 --rng-impl=threefry2x32,rbg
    ;;
base256)
    # XLA's memory count is in the rows' --json (xla_memory_mib, xla_temp_mib).
    compare base256_remat --sizes=base --config.remat=true --no-peer --steps=10 --warmup=2 \
        --repeats=2 --window=5 --rng-impl=threefry2x32,rbg
    ;;
base64)
    compare base64 --sizes=base --config.batch_size=64 --steps=10 --warmup=3 --repeats=2 \
        --window=5
    ;;
flags)
    # Command buffers (CUDA graphs) cut the launch cost of a step of thousands of small kernels:
    # the default set, none, and every op kind including while loops (K steps per call).
    for flags in "" "--xla_gpu_enable_command_buffer=" \
        "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"; do
        name=flags_$(echo "${flags:-default}" | tr -c 'A-Za-z0-9' _ | cut -c1-60)
        XLA_FLAGS="$flags" run "$name" python bench/pretrain_step.py \
            --config=configs/pretrain.py:small --config.steps_per_call=4 --steps=40 --warmup=5 \
            --repeats=3 --window=10
    done
    ;;
attention)
    # cuDNN flash attention (attention_impl=cudnn; "fused" is XLA's dot_product_attention):
    # first that it computes what the exact path computes, then its speed at base 64x512 (no
    # attention dropout in either fused row), and the cost of packed rows' [B, L, L] mask.
    run gpu_checks python bench/gpu_checks.py --config=configs/pretrain.py:small \
        --config.batch_size=8
    compare attention_base64 --sizes=base --config.batch_size=64 --no-peer \
        --attention-impl=fused,cudnn --steps=10 --warmup=3 --repeats=2 --window=5
    compare packing_small --sizes=small --no-peer --packing=off,on --attention-impl=auto,cudnn \
        --steps=40 --warmup=5 --repeats=3 --window=10
    ;;
esac
exit $status
