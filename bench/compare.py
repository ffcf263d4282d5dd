"""Our pre-training step side by side with the Hugging Face PyTorch peer, in one process.

    python bench/compare.py [--config=configs/pretrain.py:small ...] [--sizes=small,base]
        [--config.FIELD=VALUE ...] [--steps=20 --warmup=3 --repeats=3 --window=1]
        [--no-compile] [--no-peer] [--threads=N] [--steps-per-call=1,4]
        [--attention-impl=auto,fused] [--rng-impl=threefry2x32,rbg] [--packing=off,on]
        [--write] [--json=PATH]

For each config (`--config`, repeatable; `--sizes=small,base` is short for
`--config=configs/pretrain.py:small --config=configs/pretrain.py:base`; default tiny; the
`--config.FIELD=VALUE` overrides apply to each, e.g. `--config.batch_size=64
--config.dtype=float32`): the peer in eager mode, the peer under torch.compile (unless
--no-compile; the peer runs on one device, so a config whose mesh spans more has no peer rows),
then our step (one row per --attention-impl x --steps-per-call x --rng-impl x --packing
variant; each list defaults to the config's own value), each built, warmed up and timed
`--repeats` times on the same device kind, shapes and precision (bench/benchlib.py). Prints a
table of tokens/s, MFU and the ratios ours / peer. `--write` appends one row per variant to
BENCHMARKS.md (device, date, commit, the exact command, ours, peer, ratio, MFU).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import os
import shlex
import sys
from collections.abc import Callable

import ml_collections

from bench import benchlib
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.train.step import RNG_IMPLS

BENCHMARKS = os.path.join(benchlib.REPO, "BENCHMARKS.md")
SECTION = "## Pre-training step side by side: {kind} (bench/compare.py)"
TABLE_HEAD = (
    "| device | date | commit | size | batch x seq | dtype | ours | ours tokens/s "
    "| peer eager tokens/s | peer compiled tokens/s | ours / eager | ours / compiled "
    "| ours MFU | notes | command |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def comma_list(kind: Callable[[str], object], choices: tuple[str, ...] = ()) -> Callable:
    """An argparse type: "a,b" -> [kind(a), kind(b)], each among `choices` when given."""

    def parse(text: str) -> list:
        expected = f"{text!r}: expected a comma list of " + (
            ",".join(choices) if choices else f"{kind.__name__} values"
        )
        try:
            values = [kind(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(expected) from None
        if not values or any(choices and v not in choices for v in values):
            raise argparse.ArgumentTypeError(expected)
        return values

    return parse


def parse_args(
    argv: list[str] | None,
) -> tuple[argparse.Namespace, list[tuple[str, ml_collections.ConfigDict]]]:
    """The flags and every (spec, config) to compare."""
    parser = benchlib.config_parser("compare.py", __doc__, several=True)
    benchlib.add_timing_args(parser)
    variants = "for ours, one row each (default: the config's"
    parser.add_argument("--steps-per-call", type=comma_list(int), default=None,
                        help=f"comma list of K {variants} steps_per_call)")  # fmt: skip
    parser.add_argument("--attention-impl", default=None,
                        type=comma_list(str, ("auto", "exact", "fused", "cudnn")),
                        help=f"comma list {variants} model.attention_impl)")  # fmt: skip
    parser.add_argument("--rng-impl", type=comma_list(str, RNG_IMPLS), default=None,
                        help=f"comma list {variants} rng_impl): {','.join(RNG_IMPLS)}")  # fmt: skip
    parser.add_argument("--packing", type=comma_list(str, ("off", "on")), default=["off"],
                        help="comma list for ours: off,on (on: two examples per row, "
                        "per-example attention and positions)")  # fmt: skip
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    parser.add_argument("--no-peer", action="store_true", help="time ours only")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads per side (0: library defaults)"
    )
    parser.add_argument("--write", action="store_true", help="append rows to BENCHMARKS.md")
    parser.add_argument("--note", default="", help="free text for the notes column")
    parser.add_argument("--json", default="", help="also write every row to this file")
    parser.add_argument("--benchmarks-file", default=BENCHMARKS, help="where --write appends")
    return benchlib.parse_config_args(parser, argv)


def configure_environment(threads: int) -> None:
    """Before jax and torch load: no JAX GPU preallocation (torch shares the device) and,
    when asked, the same number of CPU threads on both sides."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def release_memory() -> None:
    """Frees the last runner's device memory before building the next."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(build: Callable[[], benchlib.StepRunner], args: argparse.Namespace) -> dict:
    """Builds one runner, warms it up and returns its summary row; then frees it."""
    runner = build()
    try:
        return benchlib.run_benchmark(runner, args.steps, args.warmup, args.repeats, args.window)
    finally:
        del runner
        release_memory()


def measure_or_skip(
    label: str, build: Callable[[], benchlib.StepRunner], args: argparse.Namespace
) -> dict | None:
    """`measure`, but a variant that fails (out of memory, say) is reported and skipped."""
    try:
        return measure(build, args)
    except Exception as e:  # any failure of one variant must not lose the others' rows
        first_line = (str(e).splitlines() or [""])[0][:300]
        print(f"  {label}: failed, skipped: {type(e).__name__}: {first_line}")
        release_memory()
        return None


def our_variants(
    config: ml_collections.ConfigDict, args: argparse.Namespace
) -> list[tuple[ml_collections.ConfigDict, bool]]:
    """(config, packed) per --attention-impl x --steps-per-call x --rng-impl x --packing row;
    a list not given keeps the config's value."""
    grid = itertools.product(
        args.attention_impl or [config.model.attention_impl],
        args.steps_per_call or [config.steps_per_call],
        args.rng_impl or [config.rng_impl],
        args.packing,
    )
    variants = []
    for impl, k, rng, packing in grid:
        variant = config.copy_and_resolve_references()
        variant.model.attention_impl, variant.steps_per_call, variant.rng_impl = impl, k, rng
        variants.append((variant, packing == "on"))
    return variants


def compare_config(
    spec: str,
    config: ml_collections.ConfigDict,
    args: argparse.Namespace,
    keep: Callable[[dict], None],
) -> None:
    """Every row of one config: peer eager, peer compiled, then each of our variants; `keep`
    receives each row as soon as it is measured."""
    import jax

    from bench import pretrain_step, torch_peer

    peer_device = torch_peer.torch_device().type
    if (jax.default_backend() == "cpu") != (peer_device == "cpu"):
        raise UserError(
            f"jax runs on {jax.default_backend()} but torch on {peer_device}: a side-by-side "
            "needs both on the same device kind (install the matching CUDA builds)"
        )
    devices = benchlib.mesh_size(config, jax.device_count())
    peer_modes = [] if args.no_peer else [False] + ([] if args.no_compile else [True])
    if peer_modes and devices > 1:
        print(f"  {spec}: no peer rows: the peer runs on one device, this mesh on {devices} "
              "(--config.mesh.num_devices=1 for a side by side)")  # fmt: skip
        peer_modes = []
    for compiled in peer_modes:
        build = lambda c=compiled: torch_peer.build_peer(config, c)
        row = measure_or_skip(f"{spec} peer compiled={compiled}", build, args)
        if row:
            keep({"config": spec, **row})
    for variant, packed in our_variants(config, args):
        build = lambda v=variant, p=packed: pretrain_step.build_ours(v, p)
        label = pretrain_step.variant_label(variant, packed)
        row = measure_or_skip(f"{spec} {label} {variant.model.attention_impl}", build, args)
        if row:
            keep({"config": spec, **row})


def ours_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["impl"].startswith("ours")]


def peer_row(rows: list[dict], impl: str) -> dict | None:
    return next((r for r in rows if r["impl"] == impl), None)


def ratio(ours: dict, peer: dict | None) -> float | None:
    return ours["tokens_per_s"] / peer["tokens_per_s"] if peer else None


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def variant(row: dict) -> str:
    """How our row was run: attention implementation, steps per call, and what is not the
    default: PRNG, remat, packing, an FSDP axis."""
    rng = row.get("rng_impl", "threefry2x32")
    fsdp = row.get("mesh", {}).get("fsdp", 1)
    return (
        f"attention={row['attention']}, K={row['steps_per_call']}"
        + ("" if rng == "threefry2x32" else f", rng={rng}")
        + (", remat" if row.get("remat") else "")
        + (", packed" if row.get("packed") else "")
        + ("" if fsdp == 1 else f", fsdp={fsdp} on {row['devices']} devices")
    )


def print_row(row: dict) -> None:
    spread = ", ".join(fmt(t) for t in row["tokens_per_s_repeats"])
    print(
        f"  {row['impl']:<14} {row['size']} {row['batch']}x{row['seq']} {row['dtype']}: "
        f"{fmt(row['tokens_per_s'])} tokens/s ({row['step_ms']:.2f} ms/step; repeats {spread}); "
        f"MFU {fmt(row['mfu'], '.1%')}; memory {fmt(row['peak_memory_mib'], '.0f', ' MiB')}; "
        f"loss {row['loss']:.3f}; attention {row['attention']}",
        flush=True,
    )


def print_table(rows: list[dict]) -> None:
    """One line per our variant with the ratios against the peer of the same size."""
    print(
        f"\n{'size':<6} {'shape':<9} {'ours':<38} {'ours tok/s':>12} {'eager tok/s':>12} "
        f"{'compiled':>12} {'x eager':>8} {'x comp':>8} {'MFU':>6}"
    )
    for spec in dict.fromkeys(r["config"] for r in rows):
        of_config = [r for r in rows if r["config"] == spec]
        eager, compiled = peer_row(of_config, "peer eager"), peer_row(of_config, "peer compiled")
        for ours in ours_rows(of_config):
            print(
                f"{ours['size']:<6} {ours['batch']}x{ours['seq']:<6} {variant(ours):<38} "
                f"{fmt(ours['tokens_per_s']):>12} {fmt(eager and eager['tokens_per_s']):>12} "
                f"{fmt(compiled and compiled['tokens_per_s']):>12} "
                f"{fmt(ratio(ours, eager), '.2f', 'x'):>8} "
                f"{fmt(ratio(ours, compiled), '.2f', 'x'):>8} {fmt(ours['mfu'], '.1%'):>6}"
            )


def markdown_rows(rows: list[dict], command: str, note: str) -> list[str]:
    """BENCHMARKS.md rows, one per our variant and config."""
    date, commit = datetime.date.today().isoformat(), benchlib.git_commit()
    lines = []
    for spec in dict.fromkeys(r["config"] for r in rows):
        of_config = [r for r in rows if r["config"] == spec]
        eager, compiled = peer_row(of_config, "peer eager"), peer_row(of_config, "peer compiled")
        for ours in ours_rows(of_config):
            cells = [
                ours["device"],
                date,
                commit,
                ours["size"],
                f"{ours['batch']} x {ours['seq']}",
                ours["dtype"],
                variant(ours),
                fmt(ours["tokens_per_s"]),
                fmt(eager and eager["tokens_per_s"]),
                fmt(compiled and compiled["tokens_per_s"]),
                fmt(ratio(ours, eager), ".2f", "x"),
                fmt(ratio(ours, compiled), ".2f", "x"),
                fmt(ours["mfu"], ".1%"),
                note,
                f"`{command}`",
            ]
            lines.append("| " + " | ".join(cells) + " |\n")
    return lines


def append_to_benchmarks(lines: list[str], kind: str, path: str = BENCHMARKS) -> None:
    """Appends rows under the section for `kind` (CPU or GPU), creating it at the end."""
    with open(path) as f:
        text = f.read()
    marker = SECTION.format(kind=kind)
    if marker not in text:
        text = text.rstrip("\n") + f"\n\n{marker}\n\n{TABLE_HEAD}"
    start = text.index(marker)
    end = text.find("\n## ", start + len(marker))
    end = len(text) if end < 0 else end + 1
    section = text[start:end].rstrip("\n") + "\n" + "".join(lines)
    text = text[:start] + section + ("\n" + text[end:] if end < len(text) else "")
    with open(path, "w") as f:
        f.write(text)


def notes(args: argparse.Namespace, device_kind: str) -> str:
    """What the reader needs to judge a row: versions, threads and load on CPU, the user's note."""
    import jax
    import torch

    parts = [args.note] if args.note else []
    parts.append(f"jax {jax.__version__}, torch {torch.__version__}")
    if device_kind == "CPU":
        threads = args.threads or "default"
        load = os.getloadavg()[0]
        parts.append(f"threads {threads}; load avg {load:.1f} at the end (shared machine)")
    return "; ".join(parts)


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict]:
    args, configs = parse_args(argv)
    configure_environment(args.threads)  # the configs import jax, but start no backend
    import jax
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []

    def keep(row: dict) -> None:
        """Prints the row and rewrites --json at once: a run cut off later keeps it."""
        rows.append(row)
        print_row(row)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)

    for spec, config in configs:
        compare_config(spec, config, args, keep)
    print_table(rows)
    kind = "CPU" if jax.default_backend() == "cpu" else "GPU"
    if args.write:
        command = "python bench/compare.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
        )
        lines = markdown_rows(rows, command, notes(args, kind))
        append_to_benchmarks(lines, kind, args.benchmarks_file)
        print(f"appended {len(lines)} row(s) to {args.benchmarks_file}")
    return rows


if __name__ == "__main__":
    main()
