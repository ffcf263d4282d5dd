"""Will this config fit on that TPU slice? Compiles the trainer's own step for a named Cloud TPU
slice on this machine (no TPU needed: libtpu's compile-only devices) and prints the compiler's
memory plan per chip, the chip's HBM and the headroom, FLOPs per step and the compile time.

  python -m electra_jax.compile_check --config=configs/pretrain.py:base --topology=v5e-16 \\
      [--config.FIELD=VALUE ...] [--finetune-config=configs/finetune.py:task=rte,size=base]

Exit status: 0 it fits; 1 it does not (after compiling the fixes, cheapest first: more
mesh.fsdp, remat, more grad_accum_steps, it names the first that fits); 2 bad input. A smaller
batch is never proposed: accumulation lowers memory as far (to one row per chip) and keeps the
recipe. --finetune-config also (or only) checks the fine-tuner's step on one chip (it runs on
one device); --config.* overrides apply to --config (to --finetune-config when it is alone).
These are the compiler's memory plans, not measurements of a run. A pretrain command line can
be checked as is (--workdir is ignored).
"""

import json
import os
import sys
from collections.abc import Sequence

# Compile-only: the host's default backend stays the CPU (libtpu, when installed, would
# otherwise look for a TPU at start-up); the slice's devices come from its topology.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from electra_jax.cli import ArgumentParser, load_config, split_overrides  # noqa: E402
from electra_jax.errors import UserError, exit_on_user_error  # noqa: E402
from electra_jax.finetune.compile_plan import finetune_plan  # noqa: E402
from electra_jax.train.compile_plan import Check, Plan, format_settings, run_check  # noqa: E402
from electra_jax.train.topologies import GiB, Slice, parse_slice, slice_devices  # noqa: E402

EXIT_DOES_NOT_FIT = 1


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m electra_jax.compile_check", description=__doc__)
    parser.add_argument("--config", default="", help="e.g. configs/pretrain.py:base")
    parser.add_argument(
        "--finetune-config", default="",
        help="also (or only) a fine-tuning step, e.g. configs/finetune.py:task=rte,size=base",
    )  # fmt: skip
    parser.add_argument("--topology", required=True, help="Cloud TPU type, e.g. v5litepod-16")
    parser.add_argument("--no-fixes", action="store_true", help="do not try fixes on a misfit")
    parser.add_argument("--json", default="", help="also write the result to this JSON file")
    parser.add_argument("--workdir", default="", help="ignored (a pretrain command line works)")
    return parser


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if abs(n) >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def describe(plan: Plan, hbm: int) -> list[str]:
    """The per-chip lines of one plan."""
    headroom = hbm - plan.total
    return [
        f"  per chip: arguments {gib(plan.arguments)}, outputs {gib(plan.outputs)} "
        f"({gib(plan.aliased)} of them written into the donated arguments), temporaries "
        f"{gib(plan.temporaries)}, program {gib(plan.code)}",
        f"  total {gib(plan.total)} of {gib(hbm)} HBM per chip: headroom {gib(headroom)} "
        f"({100 * headroom / hbm:.0f}%)",
    ]


def report(check: Check, spec: str) -> list[str]:
    """What the command prints: the config's plan, then the verdict (and the fix)."""
    s, c, plan = check.slice, check.program.config, check.plan
    mesh = dict(check.program.mesh.shape)
    lines = [
        f"compile check: {spec} on {s.name} ({s.topology}: {s.chips} chips, "
        f"{gib(s.hbm_bytes)} HBM each); compiler memory plan, not a measurement of a run",
        f"  mesh data={mesh['data']} fsdp={mesh['fsdp']}, batch {c.batch_size} x "
        f"{c.max_seq_len}, dtype {c.dtype}, remat {c.remat}, grad_accum_steps "
        f"{c.grad_accum_steps}, steps_per_call {c.steps_per_call}",
        *describe(plan, s.hbm_bytes),
        f"  FLOPs per step: {plan.flops:.3g} per chip, {plan.flops * s.chips:.3g} for the slice "
        f"(XLA's cost analysis; model/flops.py counts {check.analytic_flops:.3g})",
        f"  compile: {plan.compile_seconds:.1f}s on this machine",
    ]
    if check.fits:
        return [*lines, f"fits: {gib(plan.total)} per chip on {s.name}"]
    for tried in check.tried:
        fits = "fits" if tried.total <= s.hbm_bytes else "does not fit"
        lines.append(f"  tried {format_settings(tried.settings)}: {gib(tried.total)} ({fits})")
    if check.fix is not None:
        lines += describe(check.fix, s.hbm_bytes)
    return lines


def verdict(check: Check) -> str | None:
    """The one-line error of a misfit (None when it fits)."""
    s, plan = check.slice, check.plan
    if check.fits:
        return None
    over = f"does not fit: {gib(plan.total)} per chip > {gib(s.hbm_bytes)} on {s.name}"
    if check.fix is not None:
        return (
            f"{over}; the cheapest fix that fits: {format_settings(check.fix.settings)} "
            f"({gib(check.fix.total)} per chip)"
        )
    if not check.tried:
        return f"{over}; rerun without --no-fixes to try mesh.fsdp, remat and accumulation"
    return (
        f"{over}, even with every fix tried (best {gib(min(t.total for t in check.tried))}); "
        "pick a bigger slice"
    )


def plan_json(plan: Plan | None) -> dict | None:
    return {**vars(plan), "total": plan.total} if plan else None


def to_json(check: Check, spec: str, overrides: Sequence[str]) -> dict:
    return {
        "config": spec, "overrides": list(overrides), "slice": check.slice.name,
        "topology": check.slice.topology, "chips": check.slice.chips,
        "hbm_bytes": check.slice.hbm_bytes, "fits": check.fits, "plan": plan_json(check.plan),
        "analytic_flops": check.analytic_flops, "tried": [plan_json(t) for t in check.tried],
        "fix": plan_json(check.fix),
    }  # fmt: skip


def check_finetune(
    spec: str, overrides: Sequence[str], s: Slice, devices: Sequence
) -> tuple[list[str], str | None, dict]:
    """(printed lines, the misfit's one line or None, the JSON) of the fine-tuning step on one
    chip."""
    config = load_config(spec, overrides)
    if "task" not in config or "seeds" not in config:
        raise UserError(f"--finetune-config={spec} is not a fine-tuning config; pass e.g. "
                        "configs/finetune.py:task=rte,size=base")  # fmt: skip
    print(f"compiling the fine-tuning step for one chip of {s.name} ...", flush=True)
    plan, group, n_params = finetune_plan(config, devices)
    lines = [
        f"fine-tuning check: {spec} on one chip of {s.name} (the fine-tuner uses one device): "
        f"{group} seed(s) under vmap, {n_params / 1e6:.1f}M params, batch {config.batch_size} x "
        f"{config.max_seq_len}, dtype {config.dtype}",
        *describe(plan, s.hbm_bytes),
        f"  FLOPs per step: {plan.flops:.3g} (XLA's cost analysis)",
        f"  compile: {plan.compile_seconds:.1f}s on this machine",
    ]
    fits = plan.total <= s.hbm_bytes
    result = {"config": spec, "seeds_per_call": group, "fits": fits, "plan": plan_json(plan)}
    if fits:
        return [*lines, f"fits: {gib(plan.total)} on one chip of {s.name}"], None, result
    problem = (
        f"the fine-tuning step does not fit: {gib(plan.total)} > {gib(s.hbm_bytes)} on one "
        f"chip of {s.name}; lower --config.seeds_per_group (now {group}) or --config.batch_size"
    )
    return lines, problem, result


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    overrides, rest = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(rest)
    if not args.config and not args.finetune_config:
        raise UserError("nothing to check: pass --config=configs/pretrain.py:SIZE and/or "
                        "--finetune-config=configs/finetune.py:task=T,size=S")  # fmt: skip
    config = load_config(args.config, overrides) if args.config else None
    if config is not None and ("size" not in config or "mesh" not in config):
        raise UserError(f"--config={args.config} is not a pre-training config; pass e.g. "
                        "configs/pretrain.py:base")  # fmt: skip
    s = parse_slice(args.topology)
    devices = slice_devices(s)
    problems, result = [], {}
    if config is not None:
        check = run_check(config, s, devices, try_fixes=not args.no_fixes)
        print("\n".join(report(check, args.config)), flush=True)
        result = to_json(check, args.config, overrides)
        problems.append(verdict(check))
    if args.finetune_config:
        lines, problem, result["finetune"] = check_finetune(
            args.finetune_config, [] if args.config else overrides, s, devices
        )
        print("\n".join(lines), flush=True)
        problems.append(problem)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    problems = [p for p in problems if p]
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        sys.exit(EXIT_DOES_NOT_FIT)


if __name__ == "__main__":
    main()
