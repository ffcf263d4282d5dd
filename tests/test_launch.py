"""Launchers and sweeps: dry-run commands, quoting through every shell level, the SLURM script,
sweep expansion / skipping / local runs / summaries, one-line errors. No JAX, no network, no
real gcloud or sbatch (fakes on PATH where a command must actually run)."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from launch import gpu, slurm, sweep, tpu_vm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "requirements.txt")) as _f:
    JAX_VERSION = re.search(r"^jax==(\S+)", _f.read(), flags=re.MULTILINE).group(1)
TRICKY = "--config.data.dir=gs://b/my data,v2"  # a space and a comma
NASTY = '--config.note=it\'s "quoted" $HOME `x`'  # quotes and shell expansions, kept literal
TPU = ["t1", "--zone=us-central2-b"]
GCLOUD = ["gcloud", "compute", "tpus", "tpu-vm"]
JOB = ["pretrain", "--config=configs/pretrain.py:small", "--workdir=gs://b/small", TRICKY, NASTY]

FAKE_CONFIG = """
import ml_collections

def get_config(arg="x"):
    c = ml_collections.ConfigDict()
    c.learning_rate, c.seed, c.seeds, c.num_train_steps, c.note = 1e-3, 0, 1, 100, ""
    c.objective = ml_collections.ConfigDict()
    c.objective.mask_prob = 0.15
    return c

"""
GRID = """
def sweep(arg="x"):
    return [{"seed": s, "learning_rate": lr} for lr in (1e-4, 2e-4) for s in (0, 1)]
"""


def dry(main, argv, capsys) -> list[str]:
    """The lines a launcher prints with --dry-run (it must exit cleanly)."""
    main(argv)
    out = capsys.readouterr().out
    return out.splitlines()


def one_error_line(main, argv, capsys) -> str:
    """Runs a bad command line in-process: exit status != 0, exactly one stderr line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code not in (0, None), err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def fake_bin(tmp_path, name: str, body: str) -> str:
    """An executable bash script `name` in tmp_path/bin; returns that directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(bin_dir)


# ----------------------------------------------------------------------------- TPU VM


def test_tpu_create_and_delete_exact_commands(capsys):
    create = dry(tpu_vm.main, ["create", "--dry-run", *TPU, "--accelerator-type=v4-32"], capsys)
    assert create == [
        "gcloud compute tpus tpu-vm create t1 --zone=us-central2-b --accelerator-type=v4-32 "
        "--version=tpu-ubuntu2204-base"
    ]
    delete = dry(tpu_vm.main, ["--dry-run", "delete", *TPU, "--project=p"], capsys)
    assert delete == [
        "gcloud compute tpus tpu-vm delete t1 --zone=us-central2-b --project=p --quiet"
    ]


def test_tpu_setup_copies_to_all_workers_and_pins_jax(capsys):
    tar, scp, ssh = dry(tpu_vm.main, ["setup", "--dry-run", *TPU], capsys)
    assert tar.startswith("tar -czf ") and "--exclude=./.venv" in tar
    tarball = shlex.split(tar)[2]
    flags = ["--zone=us-central2-b", "--worker=all"]
    assert shlex.split(scp) == [*GCLOUD, "scp", tarball, "t1:electra_jax-code.tgz", *flags]
    assert ssh.startswith("gcloud compute tpus tpu-vm ssh t1 --zone=us-central2-b --worker=all ")
    remote = shlex.split(ssh)[-1]
    assert f"'jax[tpu]=={JAX_VERSION}' -r requirements.txt" in remote
    assert "python3.11 -m venv .venv" in remote
    git = dry(
        tpu_vm.main, ["setup", "--dry-run", *TPU, "--git=https://h/r.git", "--ref=v1"], capsys
    )
    assert len(git) == 1 and "--worker=all" in git[0] and "git clone -q https://h/r.git" in git[0]
    assert f"jax[tpu]=={JAX_VERSION}" in git[0]


@pytest.mark.parametrize("command", ["run", "status", "logs", "stop"])
def test_tpu_remote_commands_address_all_workers(command, capsys):
    extra = {"run": JOB, "stop": ["--session=pretrain"], "logs": ["--session=pretrain"]}
    lines = dry(tpu_vm.main, [command, "--dry-run", *TPU, *extra.get(command, [])], capsys)
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "t1"]
    assert "--worker=all" in argv and argv[-1].startswith("--command=")
    if command == "run":
        assert "tmux new-session -d -s pretrain" in argv[-1]
        assert "logs/pretrain-$(hostname).log" in argv[-1]  # one log per worker
    if command in ("logs", "status"):
        assert "logs/pretrain-$(hostname).log" in argv[-1] or "tmux ls" in argv[-1]
    if command == "stop":
        assert "tmux kill-session -t pretrain" in argv[-1]


def test_tpu_run_quoting_survives_every_shell(tmp_path, capsys):
    """Executes the printed remote command as a worker would (bash, then tmux's shell) with a
    fake tmux and python: the job gets exactly the arguments typed, and a per-host log."""
    (line,) = dry(
        tpu_vm.main, ["run", "--dry-run", *TPU, "--env=XLA_FLAGS=--a=1 --b", *JOB], capsys
    )
    assert (
        shlex.split(line)
        == tpu_vm.commands_for(
            tpu_vm.build_parser().parse_args(["run", *TPU, "--env=XLA_FLAGS=--a=1 --b", *JOB])
        )[0]
    )
    remote = shlex.split(line)[-1].removeprefix("--command=")
    home = tmp_path / "home"
    (home / "electra_jax" / ".venv" / "bin").mkdir(parents=True)
    python = home / "electra_jax" / ".venv" / "bin" / "python"
    python.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$HOME/args.txt"\necho "$XLA_FLAGS"\n')
    python.chmod(0o755)
    bin_dir = fake_bin(tmp_path, "tmux", """
        case "$1" in
          has-session) exit 1 ;;
          new-session) cd "$6" && exec sh -c "$7" ;;  # new-session -d -s S -c DIR CMD
        esac
    """)  # fmt: skip
    env = {**os.environ, "HOME": str(home), "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    result = subprocess.run(["bash", "-c", remote], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (home / "args.txt").read_text().splitlines() == ["-m", "electra_jax.pretrain", *JOB[1:]]
    (log,) = (home / "electra_jax" / "logs").iterdir()
    assert re.fullmatch(r"pretrain-.+\.log", log.name)
    assert "--a=1 --b" in log.read_text() and "exit status 0" in log.read_text()


def test_tpu_unknown_accelerator_needs_version(capsys):
    err = one_error_line(tpu_vm.main, ["create", *TPU, "--accelerator-type=v9-8"], capsys)
    assert "--version" in err


def test_gcloud_missing_or_failing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    err = one_error_line(tpu_vm.main, ["delete", *TPU], capsys)
    assert "gcloud not found on PATH" in err and "Google Cloud SDK" in err
    monkeypatch.setenv("PATH", fake_bin(tmp_path, "gcloud", "exit 3\n"))
    err = one_error_line(tpu_vm.main, ["delete", *TPU], capsys)
    assert "exit status 3: gcloud compute tpus tpu-vm delete t1" in err


# ----------------------------------------------------------------------------- GPU


def test_gpu_dry_runs(capsys):
    setup = dry(gpu.main, ["setup", "--dry-run"], capsys)
    assert setup[0] == f"cd {shlex.quote(REPO)}"
    assert f"'jax[cuda12]=={JAX_VERSION}' -r requirements.txt" in setup[3]
    assert setup[1] == "python3.11 -m venv .venv"
    (run,) = dry(gpu.main, ["--dry-run", "run", *JOB], capsys)[1:]
    argv = shlex.split(run)
    assert argv[:2] == ["bash", "-c"] and "tmux new-session -d -s pretrain" in argv[2]
    assert "logs/pretrain.log" in argv[2] and "--config.data.dir=gs://b/my data,v2" in argv[2]
    (stop,) = dry(gpu.main, ["stop", "--dry-run", "--session=pretrain"], capsys)[1:]
    assert "tmux kill-session -t pretrain" in stop
    (logs,) = dry(gpu.main, ["logs", "--dry-run", "--lines=7", "--follow"], capsys)[1:]
    assert "tail -n 7 -F" in logs


# ----------------------------------------------------------------------------- SLURM


def test_slurm_script_has_coordinator_and_srun(tmp_path, capsys):
    argv = ["--dry-run", "--nodes=4", "--gpus-per-node=4", "--partition=gpu", *JOB]
    out = "\n".join(dry(slurm.main, argv, capsys))
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --time=24:00:00", "#SBATCH --job-name=pretrain",
                 "#SBATCH --output=logs/%x-%j.out", "#SBATCH --partition=gpu",
                 "export JAX_LOCAL_DEVICE_IDS=0,1,2,3"):  # fmt: skip
        assert line in out.splitlines(), line
    assert 'COORDINATOR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in out
    assert 'export JAX_COORDINATOR_ADDRESS="$COORDINATOR:$((SLURM_JOB_ID % 4096 + 61440))"' in out
    (srun,) = [s for s in out.splitlines() if s.startswith("srun ")]
    python = [".venv/bin/python", "-m", "electra_jax.pretrain"]
    assert shlex.split(srun) == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *python,
                                 *JOB[1:]]  # fmt: skip
    assert (
        out.splitlines()[-1]
        == f"sbatch {shlex.quote(os.path.join(REPO, 'logs', 'pretrain.sbatch'))}"
    )
    script = out.split("\n", 1)[1].rsplit("\nmkdir", 1)[0]
    (tmp_path / "s.sh").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "s.sh")]).returncode == 0


def test_slurm_writes_and_submits(tmp_path, monkeypatch, capsys):
    bin_dir = fake_bin(tmp_path, "sbatch", 'echo "$@" > "$(dirname "$0")/submitted"\n')
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ["PATH"])
    script = tmp_path / "job.sbatch"
    slurm.main([f"--chdir={tmp_path}", f"--script={script}", *JOB])
    assert (tmp_path / "bin" / "submitted").read_text().strip() == str(script)
    assert "srun --ntasks-per-node=1" in script.read_text() and (tmp_path / "logs").is_dir()


# ----------------------------------------------------------------------------- sweeps


def make_config(tmp_path, sweep_body: str = GRID, name: str = "finetune.py") -> str:
    path = tmp_path / name
    path.write_text(FAKE_CONFIG + textwrap.dedent(sweep_body))
    return str(path)


def test_run_names_are_sorted_safe_and_distinct():
    assert sweep.run_name({"seed": 1, "learning_rate": 1e-4}) == "learning_rate=0.0001,seed=1"
    assert sweep.run_name({"lr": 1e-5, "fix": True}) == "fix=True,lr=1e-05"
    assert sweep.run_name({"note": "a/b c"}) == "note=a_b_c"
    assert sweep.run_name({}) == "default"
    with pytest.raises(sweep.UserError, match="same directory"):
        sweep.expand([{"note": "a/b"}, {"note": "a b"}], "/r")


def test_sweep_dry_run_expands_quotes_and_skips_finished(tmp_path, capsys):
    config = make_config(tmp_path)
    root = tmp_path / "root"
    (root / "learning_rate=0.0001,seed=1").mkdir(parents=True)
    (root / "learning_rate=0.0001,seed=1" / "results.json").write_text('{"score": 1}')
    argv = [f"--config={config}:a", f"--workdir={root}", "--dry-run", "--config.note=a b,c"]
    lines = dry(sweep.main, argv, capsys)
    assert len(lines) == 3  # 4 points, one finished
    first = shlex.split(lines[0].split(" && ", 1)[1])
    run_dir = str(root / "learning_rate=0.0001,seed=0")
    assert first == [sys.executable, "-m", "electra_jax.finetune", f"--config={config}:a",
                     f"--workdir={run_dir}", "--config.note=a b,c",
                     "--config.learning_rate=0.0001", "--config.seed=0",
                     ">>", f"{run_dir}/log.txt", "2>&1"]  # fmt: skip
    assert not any("seed=1," in line or "0.0001,seed=1" in line for line in lines)


def test_pretrain_finished_means_last_step_is_num_train_steps(tmp_path, capsys):
    grid = 'def sweep():\n    return [{"seed": 0}, {"seed": 1}, {"seed": 2}]\n'
    config = make_config(tmp_path, grid, "pretrain.py")
    root = tmp_path / "root"
    for seed, steps in ((0, [50, 100]), (1, [50]), (2, [])):
        run = root / f"seed={seed}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"num_train_steps": 100}))
        records = [json.dumps({"step": s, "eval/disc_auc": 0.5 + s / 1000}) for s in steps]
        (run / "metrics.jsonl").write_text("\n".join(records) + '\n{"step": 1')  # torn line
    lines = dry(sweep.main, [f"--config={config}", f"--workdir={root}", "--dry-run"], capsys)
    assert ["seed=1" in line for line in lines] == [True, False]
    assert "electra_jax.pretrain" in lines[0]
    dry(sweep.main, [f"--config={config}", f"--workdir={root}", "--summarize"], capsys)
    rows = read_csv(root / "summary.csv")
    assert [(r["run"], r["eval/disc_auc"], r["status"]) for r in rows] == [
        ("seed=0", "0.6", "finished"), ("seed=1", "", "unfinished"), ("seed=2", "", "unfinished")
    ]  # fmt: skip


def test_summarize_sorts_by_metric_and_lists_unfinished(tmp_path, capsys):
    config = make_config(tmp_path)
    root = tmp_path / "root"
    scores = {"learning_rate=0.0001,seed=0": 61.0, "learning_rate=0.0001,seed=1": 70.5,
              "learning_rate=0.0002,seed=0": 65.25}  # fmt: skip
    for name, score in scores.items():
        (root / name).mkdir(parents=True)
        results = {"score": score, "dev": {"rte": {"median": {"accuracy": 100 - score}}}}
        (root / name / "results.json").write_text(json.dumps(results))
    printed = dry(sweep.main, [f"--config={config}", f"--workdir={root}", "--summarize"], capsys)
    rows = read_csv(root / "summary.csv")
    assert [r["run"] for r in rows] == [
        "learning_rate=0.0001,seed=1", "learning_rate=0.0002,seed=0",
        "learning_rate=0.0001,seed=0", "learning_rate=0.0002,seed=1",
    ]  # fmt: skip
    assert list(rows[0]) == ["run", "seed", "learning_rate", "score", "status"]
    assert (rows[0]["score"], rows[-1]["score"], rows[-1]["status"]) == ("70.5", "", "unfinished")
    markdown = (root / "summary.md").read_text()
    assert markdown.splitlines() == printed
    table = [line for line in markdown.splitlines() if line.startswith("| learning_rate")]
    assert table[0].startswith("| learning_rate=0.0001,seed=1 | 1 | 0.0001 | 70.5 | finished |")
    assert "median over 3 run(s): 65.25" in markdown
    dry(sweep.main, [f"--config={config}", f"--workdir={root}", "--summarize",
                     "--metric=dev.rte.median.accuracy"], capsys)  # fmt: skip
    rows = read_csv(root / "summary.csv")
    assert rows[0]["run"] == "learning_rate=0.0001,seed=0"


FAKE_RUN = """
for a in "$@"; do
  case "$a" in --workdir=*) w="${a#--workdir=}" ;; --config.seed=*) s="${a#--config.seed=}" ;; esac
done
echo "fake run in $w"
[ "$s" = 1 ] && [ -n "$FAIL_SEED_1" ] && exit 5
printf '{"score": %s}' "$((60 + s))" > "$w/results.json"
"""


def test_local_runs_in_parallel_log_and_summarize(tmp_path, capsys):
    config = make_config(tmp_path)
    python = os.path.join(fake_bin(tmp_path, "python", FAKE_RUN), "python")
    root = tmp_path / "root"
    argv = [f"--config={config}", f"--workdir={root}", "--parallel=2", f"--python={python}"]
    sweep.main(argv)
    assert len(list(root.glob("*/results.json"))) == 4
    log = (root / "learning_rate=0.0002,seed=1" / "log.txt").read_text()
    assert "fake run in" in log and "[sweep]" in log
    rows = read_csv(root / "summary.csv")
    assert [r["score"] for r in rows] == ["61.0", "61.0", "60.0", "60.0"]
    capsys.readouterr()
    sweep.main(argv)  # everything finished: nothing runs again
    assert "4 finished, 0 to run" in capsys.readouterr().err


def test_local_failure_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    config = make_config(tmp_path)
    python = os.path.join(fake_bin(tmp_path, "python", FAKE_RUN), "python")
    monkeypatch.setenv("FAIL_SEED_1", "1")
    with pytest.raises(SystemExit) as exc:
        sweep.main([f"--config={config}", f"--workdir={tmp_path / 'r'}", f"--python={python}"])
    assert exc.value.code == 1
    err = capsys.readouterr().err  # a progress line, then the one error line
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert err.endswith(line + "\n") and "Traceback" not in err
    assert "2 of 4 run(s) failed" in line and "exit status 5" in line and "log.txt" in line
    assert (tmp_path / "r" / "summary.csv").exists()  # the summary is written all the same


def test_sweep_dispatches_to_tpu_and_slurm(tmp_path, capsys):
    config = make_config(tmp_path)
    base = [f"--config={config}", f"--workdir={tmp_path / 'sw'}", "--dry-run"]
    (line,) = dry(sweep.main, [*base, "--tpu=t1", "--zone=z"], capsys)
    remote = shlex.split(line)[-1]
    assert "--worker=all" in line and "tmux new-session -d -s sweep-sw" in remote
    assert remote.count(".venv/bin/python -m electra_jax.finetune") == 4
    out = "\n".join(dry(sweep.main, [*base, "--slurm", "--nodes=2", "--gpus-per-node=1"], capsys))
    assert out.count("#SBATCH --nodes=2") == 4 and out.count("\nsbatch ") == 4
    assert f"--output={tmp_path / 'sw'}/learning_rate=0.0001,seed=0/slurm-%j.out" in out


def test_real_configs_define_honest_sweeps():
    from configs import finetune, pretrain

    assert finetune.sweep("task=rte,size=small") == [{"seed": s} for s in range(10)]
    assert finetune.sweep("task=rte,size=small,sweep=lr") == [
        {"learning_rate": lr} for lr in (1.5e-4, 3e-4, 6e-4)
    ]
    assert finetune.get_config("task=rte,size=small,sweep=lr").learning_rate == 3e-4
    points = pretrain.sweep("small")
    assert len(points) == 6 and {p["objective.mask_prob"] for p in points} == {0.15, 0.25}
    sweep.check_fields(pretrain.get_config("small"), [k for p in points for k in p], "t", "p")


BAD_SWEEPS = {
    "no_sweep": ("", "defines no sweep()"),
    "a_dict": ("def sweep():\n    return {'seed': 1}\n", "returned dict"),
    "not_dicts": ("def sweep():\n    return [1, 2]\n", "sweep()[0] is int"),
    "bad_value": ("def sweep():\n    return [{'seed': [1]}]\n", "values must be"),
    "bad_field": ("def sweep():\n    return [{'nope': 1}]\n", "'nope', which is not a field"),
    "raises": ("def sweep(arg):\n    raise ValueError('bad arg')\n", "bad arg"),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweeps_are_one_line(case, tmp_path, capsys):
    body, expected = BAD_SWEEPS[case]
    config = make_config(tmp_path, body)
    err = one_error_line(sweep.main, [f"--config={config}:a", f"--workdir={tmp_path}"], capsys)
    assert expected in err


@pytest.mark.parametrize(
    ("tool", "argv", "expected"),
    [
        ("sweep", ["--workdir=x"], "required: --config"),
        ("sweep", ["--config=configs/nope.py:a", "--workdir=x"], "configs/nope.py does not exist"),
        ("sweep", ["--config=CONFIG", "--workdir=x", "--parallel=0"], "--parallel=1 or more"),
        ("sweep", ["--config=CONFIG", "--workdir=x", "--bogus=1"], "unknown flag '--bogus=1'"),
        ("sweep", ["--config=CONFIG", "--workdir=x", "--config.seed=1"], "set by the sweep"),
        ("sweep", ["--config=CONFIG", "--workdir=x", "--tpu=t"], "--tpu needs --zone"),
        ("tpu_vm", ["frobnicate", "t1", "--zone=z"], "invalid choice: 'frobnicate'"),
        ("tpu_vm", ["run", "t1", "pretrain", "--workdir=x"], "required: --zone"),
        ("tpu_vm", ["run", *TPU, "pretrain", "--workdir=x"], "pretrain needs --config"),
        ("tpu_vm", ["run", *TPU, "pretrain", "--config=c", "--workdir=w", "--dry-run"], "before"),
        ("tpu_vm", ["stop", *TPU], "required: --session"),
        ("gpu", ["launch"], "invalid choice: 'launch'"),
        ("gpu", ["run", "--env=1=2", "finetune", "--config=c", "--workdir=w"], "bad --env"),
        ("slurm", ["--dry-run"], "required: job"),
        ("slurm", ["--nodes=0", "pretrain", "--config=c", "--workdir=w"], "--nodes=1 or more"),
        ("slurm", ["--time=1 day", "pretrain", "--config=c", "--workdir=w"], "whitespace"),
    ],
)
def test_bad_input_is_one_line(tool, argv, expected, tmp_path, capsys):
    config = make_config(tmp_path)
    main = {"sweep": sweep.main, "tpu_vm": tpu_vm.main, "gpu": gpu.main, "slurm": slurm.main}[tool]
    err = one_error_line(main, [a.replace("CONFIG", config) for a in argv], capsys)
    assert expected in err, err


def test_script_entry_point_runs_from_any_directory(tmp_path):
    """The one subprocess: `python launch/sweep.py` from elsewhere imports the repository."""
    config = make_config(tmp_path)
    script = os.path.join(REPO, "launch", "sweep.py")
    result = subprocess.run(
        [sys.executable, script, f"--config={config}", "--workdir=w", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4 and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- ablation


def test_ablation_dry_run_uses_equal_compute_and_table_reads_results(tmp_path, capsys):
    from launch import ablation

    ablation.main([f"--workdir={tmp_path}", "--electra-steps=600", "--dry-run"])
    out = capsys.readouterr().out
    bert_steps = ablation.equal_compute_steps(600)
    electra_cost = 600 * ablation.pretrain_flops_per_step("tiny", 1)
    assert (
        abs(bert_steps * ablation.pretrain_flops_per_step("tiny,bert", 1) / electra_cost - 1) < 0.01
    )
    assert f"--config=configs/pretrain.py:tiny,bert --workdir={tmp_path}/bert " in out
    assert f"--config.num_train_steps={bert_steps}" in out
    assert out.count("electra_jax.finetune") == 3 * len(ablation.TASKS)
    assert f"--config.init_from={tmp_path}/bert/export" in out

    results = tmp_path / "ft-electra" / "builtin_replaced" / "results.json"
    results.parent.mkdir(parents=True)
    per_seed = [{"score": v, "seed": i} for i, v in enumerate([70.0, 80.0, 75.0])]
    results.write_text(json.dumps({"dev": {"dev": {"per_seed": per_seed}}}))
    text = ablation.table(str(tmp_path), ["random", "electra"], ("builtin_replaced",))
    assert "| electra | 75.0 [70.0-80.0], n=3 |" in text
    assert "| random | missing |" in text


# ----------------------------------------------------------------------------- --help (issue 20)

EXAMPLE = re.compile(r"^\s*python launch/(\w+)\.py\b")


def launcher(name: str):
    from launch import ablation, report

    return {"tpu_vm": tpu_vm, "gpu": gpu, "slurm": slurm, "sweep": sweep,
            "ablation": ablation, "report": report}[name]  # fmt: skip


LAUNCHERS = ("tpu_vm", "gpu", "slurm", "sweep", "ablation", "report")


def help_of(name: str, capsys, *sub: str) -> str:
    """What `python launch/NAME.py [SUB] --help` prints (exit 0)."""
    with pytest.raises(SystemExit) as exc:
        launcher(name).main([*sub, "--help"])
    assert exc.value.code in (0, None)
    return capsys.readouterr().out


def help_examples(text: str) -> list[tuple[str, list[str]]]:
    """(launcher, argv) of every `python launch/X.py ...` example line in a --help text:
    backslash continuations joined, `# comments` dropped, `[optional]` brackets unwrapped."""
    lines, examples = text.splitlines(), []
    for i, line in enumerate(lines):
        match = EXAMPLE.match(line)
        if not match:
            continue
        joined = line
        while joined.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            joined = joined.rstrip()[:-1] + " " + lines[i]
        words = shlex.split(joined, comments=True)[2:]
        examples.append((match.group(1), [w.removeprefix("[").removesuffix("]") for w in words]))
    return examples


def check_example(name: str, argv: list[str], capsys) -> None:
    """Runs an example as the launcher would, printing instead of running (--dry-run); the
    report (no --dry-run) is parsed and its paper rows resolved."""
    if name == "report":
        from launch import report

        args = report.parse_args(argv)
        report.select_paper_rows(report.load_paper_results(), args.paper_row)
        return
    if name == "sweep":  # --summarize reads finished runs; the dry run checks the same flags
        argv = [a for a in argv if a != "--summarize"] + ["--dry-run"]
    elif name == "ablation":
        argv = [*argv, "--dry-run"]
    else:  # launcher flags go before the job name
        argv = ["--dry-run", *argv]
    try:
        launcher(name).main(argv)
    except SystemExit as e:
        err = capsys.readouterr().err
        raise AssertionError(f"example `{name} {shlex.join(argv)}` fails: {err}") from e
    capsys.readouterr()


@pytest.mark.parametrize("name", LAUNCHERS)
def test_every_help_example_runs(name, tmp_path, monkeypatch, capsys):
    """Issue 20: each example command line a launcher's --help shows parses and dry-runs (the
    TPU `stop` example lacked the required --session)."""
    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
    monkeypatch.chdir(tmp_path)  # relative paths of the examples land here, not in the repo
    examples = help_examples(help_of(name, capsys))
    assert examples, f"launch/{name}.py --help shows no example"
    for tool, argv in examples:
        assert tool == name
        check_example(name, argv, capsys)
    assert os.listdir(tmp_path) == ["configs"]  # dry runs write nothing


def undescribed_options(text: str) -> list[str]:
    """Options in a --help text's option lists with no description after them or below them."""
    missing, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^  (-\S.*?)(?: {2,}(\S.*))?$", line)  # argparse indents entries by 2
        if not match or match.group(2):
            continue
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if len(below) - len(below.lstrip()) <= 2:  # blank, or the next entry: no description
            missing.append(match.group(1).strip())
    return missing


@pytest.mark.parametrize("name", LAUNCHERS)
def test_every_help_option_has_a_description(name, capsys):
    """Issue 20: launch/ablation.py --help listed its flags bare; every option says what it is."""
    subcommands = {"tpu_vm": ["create", "setup", "run", "status", "logs", "stop", "delete"],
                   "gpu": ["setup", "run", "status", "logs", "stop"]}  # fmt: skip
    for sub in [[], *([s] for s in subcommands.get(name, []))]:
        text = help_of(name, capsys, *sub)
        assert "--" in text
        assert undescribed_options(text) == [], (name, sub, text)


# ----------------------------------------------------------------------------- sweeps (issue 20)


def test_summarize_refuses_a_folder_that_holds_none_of_the_sweep(tmp_path, capsys):
    """Issue 20: --summarize on a folder that is not this sweep's listed four grid runs that
    never existed as "unfinished" and wrote summary.md there; now one error line, nothing
    written."""
    config = make_config(tmp_path)
    other = tmp_path / "other"
    (other / "some-other-run").mkdir(parents=True)
    (other / "some-other-run" / "results.json").write_text('{"score": 1}')
    (other / "notes.txt").write_text("mine\n")
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    argv = [f"--config={config}", f"--workdir={other}", "--summarize"]
    err = one_error_line(sweep.main, argv, capsys)
    assert "none of" in err and "4 run directories" in err and "learning_rate=0.0001,seed=0" in err
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before
    missing = tmp_path / "missing"
    argv = [f"--config={config}", f"--workdir={missing}", "--summarize"]
    assert "none of" in one_error_line(sweep.main, argv, capsys)
    assert not missing.exists()
    (other / "learning_rate=0.0002,seed=1").mkdir()  # one run started: a sweep, summarized
    printed = dry(sweep.main, [f"--config={config}", f"--workdir={other}", "--summarize"], capsys)
    assert "0 of 4 runs have `score`" in "\n".join(printed) and (other / "summary.md").exists()


def sbatch_requests(out: str) -> set[tuple[str, str]]:
    """(--gpus-per-node, --time) of every sbatch script a dry run printed."""
    scripts = out.split("#!/bin/bash")[1:]
    assert scripts
    found = set()
    for script in scripts:
        lines = script.splitlines()
        gpus = [x.split("=", 1)[1] for x in lines if x.startswith("#SBATCH --gpus-per-node=")]
        time_ = [x.split("=", 1)[1] for x in lines if x.startswith("#SBATCH --time=")]
        found.add((gpus[0] if gpus else "0", time_[0]))
    return found


@pytest.mark.parametrize(
    ("config", "flags", "expected"),
    [
        ("configs/finetune.py:task=builtin_replaced,size=tiny", [], {("1", "01:00:00")}),
        ("configs/pretrain.py:tiny", [], {("1", "01:00:00")}),
        ("configs/finetune.py:task=rte,size=small", [], {("8", "24:00:00")}),
        ("configs/pretrain.py:small", [], {("8", "24:00:00")}),
        ("configs/finetune.py:task=builtin_replaced,size=tiny",
         ["--gpus-per-node=2", "--time=03:00:00"], {("2", "03:00:00")}),
        ("configs/pretrain.py:tiny", ["--gpus-per-node=0"], {("0", "01:00:00")}),
    ],
)  # fmt: skip
def test_sweep_slurm_request_is_sized_from_the_config(config, flags, expected, tmp_path, capsys):
    """Issue 20: --slurm asked for 8 GPUs for 24 h for every run, tiny ones included; the
    request now follows the config's size, and --gpus-per-node / --time still override it."""
    argv = [f"--config={os.path.join(REPO, config)}", f"--workdir={tmp_path / 'sw'}", "--slurm",
            "--dry-run", *flags]  # fmt: skip
    out = "\n".join(dry(sweep.main, argv, capsys))
    assert sbatch_requests(out) == expected
