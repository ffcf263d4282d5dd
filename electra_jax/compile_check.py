"""Will this config fit on that TPU slice? Compiles the trainer's own step for a named Cloud TPU
slice on this machine (no TPU needed: libtpu's compile-only devices) and prints the compiler's
memory plan per chip, the chip's HBM and the headroom, FLOPs per step and the compile time.

  python -m electra_jax.compile_check --config=configs/pretrain.py:base --topology=v5e-16 \\
      [--config.FIELD=VALUE ...]

Exit status: 0 it fits; 1 it does not (the cheapest fix that fits is named, after compiling the
fixes in order: mesh.fsdp over every chip, remat, grad_accum_steps, a smaller batch); 2 bad
input. These are the compiler's memory plans, not measurements of a run. A pretrain command
line can be checked as is (--workdir is accepted and ignored).
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
from electra_jax.train.compile_plan import Check, Plan, format_settings, run_check  # noqa: E402
from electra_jax.train.topologies import GiB, parse_slice, slice_devices  # noqa: E402

EXIT_DOES_NOT_FIT = 1


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m electra_jax.compile_check", description=__doc__)
    parser.add_argument("--config", required=True, help="e.g. configs/pretrain.py:base")
    parser.add_argument("--topology", required=True, help="Cloud TPU type, e.g. v5litepod-16")
    parser.add_argument("--no-fixes", action="store_true", help="do not try fixes on a misfit")
    parser.add_argument("--json", default="", help="also write the result to this JSON file")
    parser.add_argument("--workdir", default="", help=argparse_ignored())
    return parser


def argparse_ignored() -> str:
    return "ignored (so a pretrain command line can be checked as is)"


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
        return f"{over}; rerun without --no-fixes to try mesh.fsdp, remat, accumulation, batch"
    return (
        f"{over}, even with every fix tried (best {gib(min(t.total for t in check.tried))}); "
        "pick a bigger slice"
    )


def to_json(check: Check, spec: str, overrides: Sequence[str]) -> dict:
    plan_dict = lambda p: {**vars(p), "total": p.total} if p else None  # noqa: E731
    return {
        "config": spec, "overrides": list(overrides), "slice": check.slice.name,
        "topology": check.slice.topology, "chips": check.slice.chips,
        "hbm_bytes": check.slice.hbm_bytes, "fits": check.fits, "plan": plan_dict(check.plan),
        "analytic_flops": check.analytic_flops, "tried": [plan_dict(t) for t in check.tried],
        "fix": plan_dict(check.fix),
    }  # fmt: skip


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    overrides, rest = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(rest)
    config = load_config(args.config, overrides)
    if "size" not in config or "mesh" not in config:
        raise UserError(f"--config={args.config} is not a pre-training config; pass e.g. "
                        "configs/pretrain.py:base")  # fmt: skip
    s = parse_slice(args.topology)
    devices = slice_devices(s)
    check = run_check(config, s, devices, try_fixes=not args.no_fixes)
    print("\n".join(report(check, args.config)), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(check, args.config, overrides), f, indent=1)
    problem = verdict(check)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_DOES_NOT_FIT)


if __name__ == "__main__":
    main()
