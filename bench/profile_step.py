"""Where our pre-training step spends its device time: a profile broken down by model part.

    python bench/profile_step.py [--config=configs/pretrain.py:small] [--config.FIELD=VALUE ...]
        [--steps=10] [--packed] [--top=15] [--json=PATH] [--trace-dir=DIR]

Compiles the config's step as `pretrain_step.py` does (default `configs/pretrain.py:tiny`; e.g.
`--config.batch_size=8 --config.steps_per_call=4 --config.rng_impl=rbg`), warms it up, records
`--steps` calls with `jax.profiler` (a Perfetto trace) and attributes every device op (a GPU kernel;
an XLA thunk on CPU) to a part of the step through the op's source scope in the compiled HLO's
metadata: which tower, forward or backward, and which component (attention, feed-forward, dropout,
optimiser, ...). It prints milliseconds per step for each component, the busy fraction of the device
(well below 100% means the step is bound by launches and the host, not by the kernels) and the ops
that cost most. A fusion counts wholly towards its root op's scope. Kernels run inside an XLA
command buffer (CUDA graph) may carry no HLO op in the trace: for a full attribution on a GPU
profile with `XLA_FLAGS=--xla_gpu_enable_command_buffer=` and compare the wall time without it.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable

import ml_collections

from bench import benchlib, pretrain_step
from electra_jax.errors import exit_on_user_error

# First match wins: (component, regex over the op's source scope; the named scopes of
# objective.py and train_step.py appear as "/name/" or, under autodiff, "jvp(name)/").
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("optimizer", r"\boptimizer\b"),
    ("masking", r"\bmasking\b"),
    ("sampling (Gumbel, replace)", r"\bsampling\b"),
    ("losses", r"\b(mlm_loss|disc_loss)\b"),
    ("dropout (RNG and mask)", r"[Dd]ropout"),
    ("attention core (scores, softmax, context)", r"_exact_attention|dot_product_attention"),
    ("attention projections", r"/attention/(query|key|value|output)/"),
    ("feed-forward", r"/layer_\d+/(intermediate/|output/|gelu)"),
    ("layer norm", r"LayerNorm"),
    ("generator head", r"generator_head"),
    ("discriminator head", r"discriminator_head"),
    ("embeddings", r"embeddings"),
    ("random numbers, other", r"threefry|random_bits|_uniform|rng"),
    ("parameter casts and layouts", r"^state\.params"),
)
CONTROL_FLOW = {"while", "conditional", "call"}  # their bodies' ops are counted instead


def classify(op_name: str) -> tuple[str, str, str]:
    """(tower, pass, component) of one HLO op from its metadata's op_name (its source scope)."""
    if "generator_logits" in op_name:
        tower = "generator"
    elif "discriminator_logits" in op_name:
        tower = "discriminator"
    else:
        tower = "-"
    if "transpose(" in op_name:
        step_pass = "backward"
    elif "jvp(" in op_name:
        step_pass = "forward"
    else:  # outside the differentiated function: masking, the optimiser, unscoped ops
        step_pass = "-"
    component = next((c for c, rx in COMPONENTS if re.search(rx, op_name)), "other")
    return tower, step_pass, component


def hlo_ops(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Every instruction of a compiled HLO module: name -> (opcode, op_name metadata)."""
    ops = {}
    pattern = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*? ([\w\-]+)\(")
    for line in hlo_text.splitlines():
        m = pattern.match(line)
        if m:
            op_name = re.search(r'op_name="([^"]*)"', line)
            ops[m.group(1)] = (m.group(2), op_name.group(1) if op_name else "")
    return ops


def copied_parameters(hlo_text: str) -> tuple[list[str], int]:
    """Floating-point entry parameters (non-scalar) the compiled module copies, and their count.

    These are the params and optimiser moments. A donated buffer that is read after its new value
    is written gets copied first: memory traffic and, on a GPU, a kernel launch. (Integer inputs,
    the batch, are not donated; a layout copy of them is harmless.)
    """
    entry = hlo_text[hlo_text.index("\nENTRY") :]
    arrays = set(
        re.findall(r"%?([\w.\-]+) = (?:f16|bf16|f32|f64)\[\d[^\]]*\]\S* parameter\(", entry)
    )
    copied = [name for name in re.findall(r" copy\(%?([\w.\-]+)\)", entry) if name in arrays]
    return copied, len(arrays)


def module_name(hlo_text: str) -> str:
    m = re.match(r"HloModule ([\w.\-]+)", hlo_text)
    return m.group(1) if m else ""


def load_trace(trace_dir: str) -> list[dict]:
    """The events of the newest Perfetto trace `jax.profiler.trace` wrote under `trace_dir`."""
    files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not files:
        raise SystemExit(f"no *.trace.json.gz under {trace_dir}: did the profiler run?")
    with gzip.open(max(files, key=os.path.getmtime), "rt") as f:
        return json.load(f)["traceEvents"]


def device_op_events(events: list[dict], module: str) -> tuple[list[dict], list[str]]:
    """The events that are device work, and the names of the timelines they came from.

    On a GPU: the kernels and copies on the device's CUDA stream lines (or, where the trace has
    no such line, its events that name an HLO op); on CPU: the XLA thunks (events naming an HLO
    op). Events of another HLO module are dropped where the module is named.
    """
    processes = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    threads = {
        (e["pid"], e.get("tid")): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    gpu_pids = {pid for pid, name in processes.items() if name.startswith("/device:GPU")}
    streams = {
        key for key, name in threads.items() if key[0] in gpu_pids and name.startswith("Stream")
    }
    complete = [e for e in events if e.get("ph") == "X"]
    if streams:
        chosen = [e for e in complete if (e["pid"], e.get("tid")) in streams]
    else:
        chosen = [
            e
            for e in complete
            if "hlo_op" in e.get("args", {}) and (not gpu_pids or e["pid"] in gpu_pids)
        ]
    if module:
        chosen = [e for e in chosen if e.get("args", {}).get("hlo_module", module) == module]
    lines = sorted(
        {f"{processes.get(e['pid'], e['pid'])} / {threads.get((e['pid'], e.get('tid')), '?')}"
         for e in chosen}
    )  # fmt: skip
    return chosen, lines


def kernel_name_index(ops: dict[str, tuple[str, str]]) -> dict[str, str]:
    """XLA names a GPU kernel after its HLO instruction with '.' and '-' as '_': undo that."""
    return {re.sub(r"[.\-]", "_", name): name for name in ops}


def resolve_op(
    event: dict, ops: dict[str, tuple[str, str]], kernels: dict[str, str]
) -> tuple[str, str, str]:
    """(op, opcode, source scope) of one device event.

    By the event's `hlo_op`, else by its kernel name, else by a scope path the event itself
    carries (`args.name`); library kernels and copies outside XLA's naming stay unattributed.
    """
    args = event.get("args", {})
    name = args.get("hlo_op") or kernels.get(re.sub(r"[.\-]", "_", event.get("name", "")))
    if name:
        opcode, op_name = ops.get(name, ("?", ""))
        return name, opcode, op_name
    scope = args.get("name", "")
    return event.get("name", "?")[:80], "kernel", scope if "/" in scope else ""


def busy_microseconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (overlapping streams or threads count once)."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def summarise(
    events: list[dict], ops: dict[str, tuple[str, str]], steps: int, wall_s: float, top: int
) -> dict:
    """Milliseconds per step by (component, tower, pass), busy fraction and the top ops."""
    by_part: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    by_op: dict[str, list] = {}
    counted = []
    kernels = kernel_name_index(ops)
    for e in events:
        name, opcode, op_name = resolve_op(e, ops, kernels)
        if opcode in CONTROL_FLOW:
            continue
        counted.append((e["ts"], e["ts"] + e["dur"]))
        tower, step_pass, component = classify(op_name)
        by_part[(component, tower, step_pass)] += e["dur"]
        entry = by_op.setdefault(name, [0.0, 0, opcode, op_name])
        entry[0] += e["dur"]
        entry[1] += 1
    per_step = lambda us: us / 1e3 / steps  # noqa: E731
    kernel_ms = per_step(sum(by_part.values()))
    parts = [
        {"component": c, "tower": t, "pass": p, "ms_per_step": per_step(us)}
        for (c, t, p), us in sorted(by_part.items(), key=lambda kv: -kv[1])
    ]
    top_ops = [
        {
            "op": name,
            "opcode": opcode,
            "ms_per_step": per_step(us),
            "calls_per_step": n / steps,
            "source": op_name,
        }  # fmt: skip
        for name, (us, n, opcode, op_name) in sorted(by_op.items(), key=lambda kv: -kv[1][0])
    ][:top]
    return {
        "wall_ms_per_step": wall_s * 1e3 / steps,
        "busy_ms_per_step": per_step(busy_microseconds(counted)),
        "op_ms_per_step": kernel_ms,
        "ops_per_step": len(counted) / steps,
        "parts": parts,
        "top_ops": top_ops,
    }


def profile(
    config: ml_collections.ConfigDict,
    packed: bool = False,
    steps: int = 10,
    warmup: int = 3,
    top: int = 15,
    trace_dir: str | None = None,
) -> dict:
    """Compiles, warms up, traces `steps` calls and returns the summary (see the docstring)."""
    import jax

    shape = benchlib.shape_of(config)
    ours = pretrain_step.compile_ours(config, packed)
    steps_per_call = config.steps_per_call
    hlo_text = ours.compiled.as_text()
    state = ours.state
    for _ in range(warmup):
        state, metrics = ours.compiled(state, ours.batch)
    jax.block_until_ready(state)
    trace_dir = trace_dir or tempfile.mkdtemp(prefix="electra_profile_")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = ours.compiled(state, ours.batch)
        jax.block_until_ready((state, metrics))
        wall_s = time.perf_counter() - start
    events, lines = device_op_events(load_trace(trace_dir), module_name(hlo_text))
    if not events:
        raise SystemExit(f"the trace under {trace_dir} has no device op events")
    optimizer_steps = steps * steps_per_call
    summary = summarise(events, hlo_ops(hlo_text), optimizer_steps, wall_s, top)
    return {
        "size": shape.size,
        "batch": shape.batch,
        "seq": shape.seq,
        "dtype": config.dtype,
        "device": pretrain_step.describe_device(jax.devices()[0]),
        "mesh": dict(ours.mesh.shape),
        "steps_per_call": steps_per_call,
        "attention_impl": ours.model.attention_impl,
        "remat": config.remat,
        "rng_impl": config.rng_impl,
        "packed": packed,
        "steps": optimizer_steps,
        "tokens_per_s": shape.tokens_per_step / (summary["wall_ms_per_step"] / 1e3),
        "trace_dir": trace_dir,
        "trace_lines": lines,
        "copied_parameters": len(copied_parameters(hlo_text)[0]),
        **summary,
    }


def print_summary(result: dict) -> None:
    wall, busy = result["wall_ms_per_step"], result["busy_ms_per_step"]
    print(
        f"profile: {result['size']} {result['batch']}x{result['seq']} {result['dtype']} on "
        f"{result['device']}, K={result['steps_per_call']}, {result['steps']} steps: "
        f"{wall:.2f} ms/step wall ({result['tokens_per_s']:,.0f} tokens/s), device busy "
        f"{busy:.2f} ms/step ({busy / wall:.0%}), {result['ops_per_step']:.0f} ops/step, "
        f"op time {result['op_ms_per_step']:.2f} ms/step"
    )
    print(f"device timelines: {'; '.join(result['trace_lines'])}")
    print(f"copies of (donated) input arrays in the compiled step: {result['copied_parameters']}")
    totals: dict[str, float] = collections.defaultdict(float)
    for part in result["parts"]:
        totals[part["component"]] += part["ms_per_step"]
    op_ms = max(result["op_ms_per_step"], 1e-12)
    print(f"\n{'component':<42} {'ms/step':>8} {'share':>6}   by tower and pass")
    for component, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        detail = ", ".join(
            f"{p['tower']} {p['pass']} {p['ms_per_step']:.2f}"
            for p in result["parts"]
            if p["component"] == component
        )
        print(f"{component:<42} {ms:>8.2f} {ms / op_ms:>6.1%}   {detail}")
    print(f"\n{'ms/step':>8} {'calls':>6}  op (opcode): source scope")
    for op in result["top_ops"]:
        print(
            f"{op['ms_per_step']:>8.3f} {op['calls_per_step']:>6.1f}  {op['op']} "
            f"({op['opcode']}): {op['source'][-110:]}"
        )


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    parser = benchlib.config_parser("profile_step.py", __doc__)
    parser.add_argument("--steps", type=int, default=10, help="calls recorded in the trace")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls after compiling")
    parser.add_argument("--packed", action="store_true", help="rows of two packed examples")
    parser.add_argument("--top", type=int, default=15, help="how many of the costliest ops")
    parser.add_argument("--json", default="", help="also write the summary to this file")
    parser.add_argument("--trace-dir", default=None, help="keep the trace here (TensorBoard)")
    args, [(spec, config)] = benchlib.parse_config_args(parser, argv)
    result = {
        "config": spec,
        "overrides": args.overrides,
        **profile(config, args.packed, args.steps, args.warmup, args.top, args.trace_dir),
    }
    print_summary(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
