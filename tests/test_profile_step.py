"""bench/profile_step.py: op attribution, busy time, and a real tiny profile on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import profile_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "op_name, expected",
    [
        ("jit(train_step)/jvp(ElectraModel.generator_logits)/generator/layer_1/attention/"
         "attention._exact_attention/Dropout_0/jit(_bernoulli)/jit(_uniform)/add",
         ("generator", "forward", "dropout (RNG and mask)")),
        ("jit(train_step)/transpose(jvp(ElectraModel.discriminator_logits))/ElectraModel."
         "discriminator_hidden/discriminator/layer_0/attention/attention._exact_attention/"
         "bnqk,bknd->bqnd/dot_general",
         ("discriminator", "backward", "attention core (scores, softmax, context)")),
        ("jit(train_step)/transpose(jvp(ElectraModel.discriminator_logits))/discriminator/"
         "layer_3/intermediate/dot_general",
         ("discriminator", "backward", "feed-forward")),
        ("jit(train_step)/jvp(ElectraModel.generator_logits)/generator/layer_2/gelu/erfc",
         ("generator", "forward", "feed-forward")),
        ("jit(train_step)/jvp(sampling)/reduce", ("-", "forward", "sampling (Gumbel, replace)")),
        ("jit(train_step)/optimizer/mul", ("-", "-", "optimizer")),
        ("jit(train_step)/masking/scatter", ("-", "-", "masking")),
        ("jit(train_step)/add", ("-", "-", "other")),
    ],
)  # fmt: skip
def test_ops_are_attributed_by_source_scope(op_name, expected):
    assert profile_step.classify(op_name) == expected


def test_busy_time_counts_overlapping_streams_once():
    assert profile_step.busy_microseconds([(0, 10), (5, 12), (20, 25), (24, 30)]) == 22
    assert profile_step.busy_microseconds([]) == 0


def test_summary_skips_control_flow_and_sums_per_step():
    ops = {
        "fusion.1": ("fusion", "jit(train_step)/optimizer/mul"),
        "while.2": ("while", "jit(train_step)/sampling/while"),
        "fusion.3": ("fusion", "jit(train_step)/jvp(sampling)/add"),
    }
    events = [
        {"ts": 0, "dur": 4, "args": {"hlo_op": "fusion.1"}},
        {"ts": 4, "dur": 10, "args": {"hlo_op": "while.2"}},  # contains fusion.3
        {"ts": 5, "dur": 2, "args": {"hlo_op": "fusion.3"}},
        {"ts": 100, "dur": 4, "args": {"hlo_op": "fusion.1"}},
        {"ts": 105, "dur": 2, "args": {"hlo_op": "fusion.3"}},
    ]
    summary = profile_step.summarise(events, ops, steps=2, wall_s=0.001, top=5)
    assert summary["ops_per_step"] == 2
    assert summary["op_ms_per_step"] == pytest.approx(6e-3)
    assert summary["wall_ms_per_step"] == pytest.approx(0.5)
    parts = {p["component"]: p["ms_per_step"] for p in summary["parts"]}
    assert parts == pytest.approx({"optimizer": 4e-3, "sampling (Gumbel, replace)": 2e-3})
    assert [op["op"] for op in summary["top_ops"]] == ["fusion.1", "fusion.3"]


def test_gpu_trace_counts_stream_kernels_once_and_maps_kernel_names_to_hlo_ops():
    """On a GPU the kernels on the CUDA stream lines count; the derived "XLA Ops" line repeats
    them and is ignored; a kernel without `hlo_op` is found by its name (a '.' becomes '_')."""
    meta = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7"}},
        {"ph": "M", "pid": 1, "tid": 9, "name": "thread_name", "args": {"name": "XLA Ops"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
    ]  # fmt: skip
    kernels = [
        {"ph": "X", "pid": 1, "tid": 7, "ts": 0, "dur": 3, "name": "loop_add_fusion_3", "args": {}},
        {"ph": "X", "pid": 1, "tid": 7, "ts": 3, "dur": 1, "name": "MemcpyD2D", "args": {}},
        {"ph": "X", "pid": 1, "tid": 9, "ts": 0, "dur": 3, "name": "loop_add_fusion.3",
         "args": {"hlo_op": "loop_add_fusion.3"}},
        {"ph": "X", "pid": 2, "tid": 1, "ts": 0, "dur": 50, "name": "host work",
         "args": {"hlo_op": "loop_add_fusion.3"}},
    ]  # fmt: skip
    events, lines = profile_step.device_op_events(meta + kernels, module="jit_train_step")
    assert lines == ["/device:GPU:0 / Stream #7"] and len(events) == 2
    ops = {"loop_add_fusion.3": ("fusion", "jit(train_step)/optimizer/add")}
    summary = profile_step.summarise(events, ops, steps=1, wall_s=1e-5, top=5)
    parts = {p["component"]: p["ms_per_step"] for p in summary["parts"]}
    assert parts == pytest.approx({"optimizer": 3e-3, "other": 1e-3})
    assert summary["busy_ms_per_step"] == pytest.approx(4e-3)


def test_profile_of_a_tiny_step_on_cpu(tmp_path):
    out = tmp_path / "profile.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0")
    command = [sys.executable, os.path.join(REPO, "bench", "profile_step.py"),
               "--config=configs/pretrain.py:tiny", "--config.batch_size=4",
               "--config.max_seq_len=32", "--steps=2", "--warmup=1", f"--json={out}",
               f"--trace-dir={tmp_path / 'trace'}"]  # fmt: skip
    printed = subprocess.run(
        command, check=True, env=env, cwd=REPO, timeout=300, capture_output=True, text=True
    ).stdout
    result = json.loads(out.read_text())
    components = {p["component"] for p in result["parts"]}
    expected = {
        "optimizer",
        "feed-forward",
        "attention core (scores, softmax, context)",
        "sampling (Gumbel, replace)",
        "dropout (RNG and mask)",
        "generator head",
    }
    assert expected <= components
    assert 0 < result["busy_ms_per_step"] <= result["wall_ms_per_step"]
    assert result["op_ms_per_step"] > 0 and result["ops_per_step"] > 100
    assert "device busy" in printed and "feed-forward" in printed
