"""The compile check (`python -m electra_jax.compile_check`): tiny's train step compiled for a
v4-8 slice (libtpu's compile-only devices, no TPU here) reports the executable's own bytes; bad
input is one line; the fix ladder's order and the misfit verdict."""

import json
import sys

import jax
import pytest

from bench import compile_plans
from configs.pretrain import get_config
from electra_jax import compile_check
from electra_jax.model.config import PRESETS
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train import compile_plan
from electra_jax.train.compile_plan import Check, Plan, fix_ladder
from electra_jax.train.topologies import GiB, parse_slice

MiB = 2**20


@pytest.fixture(autouse=True)
def libtpu_env(monkeypatch):
    """The variables the check sets for libtpu, restored after each test (later tests in this
    process must not look like they run on a TPU VM)."""
    for name, value in (("TPU_ACCELERATOR_TYPE", "v4-8"), ("TPU_WORKER_HOSTNAMES", "localhost"),
                        ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):  # fmt: skip
        monkeypatch.setenv(name, value)


def one_error_line(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        compile_check.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_tiny_on_v4_8_reports_the_executables_bytes(tmp_path, monkeypatch, capsys, recwarn):
    compiled = []
    real = compile_plan.compile_step
    monkeypatch.setattr(
        compile_plan, "compile_step", lambda *a: compiled.append(real(*a)) or compiled[-1]
    )
    out = tmp_path / "check.json"
    argv = ["--config=configs/pretrain.py:tiny", "--topology=v4:2x2x1", f"--json={out}",
            "--workdir=ignored"]  # fmt: skip
    compile_check.main(argv)  # fits: returns without exiting
    printed = capsys.readouterr().out
    (executable,) = compiled
    # A TPU executable for the slice's 4 chips (v4-8: 4 megacore chips), data-parallel.
    devices = {d for s in jax.tree.leaves(executable.input_shardings) for d in s.device_set}
    assert {d.platform for d in devices} == {"tpu"} and len(devices) == 4
    assert {d.device_kind for d in devices} == {"TPU v4"}
    m, report = executable.memory_analysis(), json.loads(out.read_text())
    plan = report["plan"]
    assert (plan["arguments"], plan["outputs"], plan["aliased"], plan["temporaries"]) == (
        m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes,
        m.temp_size_in_bytes,
    )  # fmt: skip
    total = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
             + m.temp_size_in_bytes + m.generated_code_size_in_bytes)  # fmt: skip
    assert plan["total"] == total and report["fits"] and report["hbm_bytes"] == 32 * GiB
    assert f"total {total / MiB:.1f} MiB of 32.00 GiB HBM per chip" in printed
    assert "mesh data=4 fsdp=1, batch 32 x 128" in printed and "fits: " in printed
    # Replicated state + this chip's quarter of the batch (3 int32 [8, 128] arrays) is what the
    # arguments hold; TPU tiles pad the small bias vectors, hence the upper slack.
    n_params = sum(x.size for x in jax.tree.leaves(report_state_params()))
    state, batch = 3 * 4 * n_params, 3 * 8 * 128 * 4
    assert state + batch <= m.argument_size_in_bytes <= 1.25 * (state + batch)
    assert m.alias_size_in_bytes >= state  # the donated state is updated in place
    assert plan["flops"] > 0 and report["analytic_flops"] / 4 < plan["flops"] * 4
    # Kept out of the suite's persistent compile cache (a compile-only executable cannot be
    # read back: each later run would warn and compile again).
    assert not [w for w in recwarn if "compilation cache" in str(w.message)]


def report_state_params():
    """tiny's parameter shapes (the model's own init, abstractly)."""
    model = ElectraModel(PRESETS["tiny"])
    return jax.eval_shape(lambda r: init_params(model, r), jax.random.key(0))


def test_unknown_topology_lists_the_valid_names(capsys):
    err = one_error_line(["--config=configs/pretrain.py:tiny", "--topology=v5-8"], capsys)
    assert "unknown TPU topology 'v5-8'" in err
    assert all(name in err for name in ("v4-32", "v5litepod-16", "v5p-8", "v6e-8"))


def test_mesh_that_does_not_divide_the_slice(capsys):
    argv = ["--config=configs/pretrain.py:tiny", "--topology=v4-8", "--config.mesh.fsdp=3"]
    err = one_error_line(argv, capsys)
    assert "mesh data=-1 x fsdp=3 does not divide v4-8's 4 chips" in err
    assert "--config.mesh.fsdp to a divisor of 4" in err


def test_config_that_cannot_fit_even_with_every_fix(capsys):
    # 1e9 x 32 embedding: 128 GB of float32 parameters, x3 with Adam's two moments = 96 GB
    # per chip over v4-8's 4 chips, whatever is sharded: no fix can help, nothing compiles.
    argv = ["--config=configs/pretrain.py:tiny", "--topology=v4-8",
            "--config.model.vocab_size=1000000000"]  # fmt: skip
    err = one_error_line(argv, capsys)
    assert "cannot fit on v4-8 even with every fix" in err and "pick a bigger slice" in err


def test_missing_libtpu_names_the_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "libtpu", None)  # import libtpu -> ImportError
    err = one_error_line(["--config=configs/pretrain.py:tiny", "--topology=v4-8"], capsys)
    assert "pip install libtpu==0.0.42.1" in err and "requirements-dev.txt" in err


def test_cloud_names_count_cores_on_v4_and_v5p_chips_on_v5e_and_v6e():
    # Cloud TPU docs: v4-8 and v5p-8 are 4 chips (2x2x1), v5litepod-16 a 4x4 grid, v6e-8 2x4.
    expected = {"v4-8": ("v4:2x2x1", 4, 32), "v4-32": ("v4:2x2x4", 16, 32),
                "v5p-8": ("v5p:2x2x1", 4, 95), "v5litepod-16": ("v5e:4x4", 16, 16),
                "v5e-16": ("v5e:4x4", 16, 16), "v6e-8": ("v6e:2x4", 8, 32)}  # fmt: skip
    for name, (topology, chips, hbm) in expected.items():
        s = parse_slice(name)
        assert (s.topology, s.chips, s.hbm_bytes) == (topology, chips, hbm * GiB), name


def test_fix_ladder_goes_from_cheapest_to_one_row_per_chip():
    config = get_config("base")  # batch 256, mesh data=-1 fsdp=1, no remat
    full = {"mesh.data": -1, "mesh.fsdp": 8, "remat": True}
    # 256 rows over 8 chips: accumulation down to 8 rows per micro-batch (one per chip).
    assert fix_ladder(config, 8) == [
        {"mesh.data": -1, "mesh.fsdp": 2}, {"mesh.data": -1, "mesh.fsdp": 4},
        {"mesh.data": -1, "mesh.fsdp": 8}, full,
        *({**full, "grad_accum_steps": a} for a in (2, 4, 8, 16, 32)),
    ]  # fmt: skip
    config.batch_size, config.remat = 96, True  # 96 = 8 x 12: every divisor of 12, not only 2^k
    accums = [r["grad_accum_steps"] for r in fix_ladder(config, 8) if "grad_accum_steps" in r]
    assert accums == [2, 3, 4, 6, 12]


def plan(total_gib: float, settings: dict | None = None) -> Plan:
    return Plan(settings or {}, 0, 0, 0, int(total_gib * GiB), 0, 1.0, 1.0)


def test_misfit_names_the_cheapest_fix_and_exits_1():
    s = parse_slice("v5litepod-8")
    check = Check(s, None, plan(20), 1.0, [plan(18, {"remat": True})], None)
    assert compile_check.verdict(check).endswith("pick a bigger slice")
    check.fix = plan(12, {"remat": True, "grad_accum_steps": 2})
    check.tried.append(check.fix)
    line = compile_check.verdict(check)
    assert line.startswith("does not fit: 20.00 GiB per chip > 16.00 GiB on v5litepod-8")
    assert "cheapest fix that fits: --config.remat=True --config.grad_accum_steps=2" in line
    assert compile_check.EXIT_DOES_NOT_FIT == 1


def test_nothing_to_check_or_a_config_of_the_other_kind_is_one_line(capsys):
    err = one_error_line(["--topology=v4-8"], capsys)
    assert "nothing to check" in err and "--finetune-config=" in err
    err = one_error_line(["--finetune-config=configs/pretrain.py:tiny", "--topology=v4-8"], capsys)
    assert "is not a fine-tuning config" in err


@pytest.mark.slow  # ~40 s on 2 idle cores (90 s loaded): one more TPU compile
def test_finetune_step_compiles_for_one_chip(tmp_path, capsys):
    out = tmp_path / "check.json"
    argv = ["--finetune-config=configs/finetune.py:task=rte,size=tiny", "--topology=v5e-4",
            f"--json={out}"]  # fmt: skip
    compile_check.main(argv)
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())["finetune"]
    plan = result["plan"]
    assert result["fits"] and result["seeds_per_call"] >= 1
    assert plan["aliased"] > 0  # params and optimiser state donated, as in the fine-tuner
    assert f"total {plan['total'] / MiB:.1f} MiB of 16.00 GiB HBM per chip" in printed


@pytest.mark.slow  # two more TPU compiles of tiny (~40 s on 2 idle cores)
def test_flops_per_step_do_not_change_with_accumulation(tmp_path):
    """XLA's cost analysis counts a loop's body once; the reported FLOPs per optimiser step
    are scaled back, so 2 micro-batches of 16 rows count as one batch of 32 (within the
    optimiser update, counted twice, and the accumulation adds)."""
    flops = []
    for accum in (1, 2):
        out = tmp_path / f"check{accum}.json"
        compile_check.main(["--config=configs/pretrain.py:tiny", "--topology=v4-8",
                            f"--config.grad_accum_steps={accum}", f"--json={out}"])  # fmt: skip
        flops.append(json.loads(out.read_text())["plan"]["flops"])
    assert flops[1] == pytest.approx(flops[0], rel=0.05)


def test_benchmark_table_row_from_a_check(tmp_path):
    """bench/compile_plans.py's markdown row: GiB per chip, the verdict, the cheapest fix."""
    plan = {"arguments": 2 * GiB, "temporaries": 20 * GiB, "code": GiB // 4, "total": 22 * GiB,
            "flops": 1.5e13, "compile_seconds": 400.0}  # fmt: skip
    fix = {**plan, "settings": {"remat": True, "grad_accum_steps": 4}, "total": 9 * GiB}
    check = {"slice": "v5litepod-8", "chips": 8, "hbm_bytes": 16 * GiB, "fits": False,
             "plan": plan, "fix": fix, "tried": [fix]}  # fmt: skip
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"size": "base", "slice": "v5litepod-8", "check": check}) + "\n")
    row = compile_plans.table(str(path)).splitlines()[-1]
    assert row == (
        "| base (256 x 512) | v5litepod-8 | 8 | 16.00 | 22.00 (2.00, 20.00, 0.25) | no | "
        "`remat=True` `grad_accum_steps=4` (9.00) | 1.5e+13 | 400 |"
    )
