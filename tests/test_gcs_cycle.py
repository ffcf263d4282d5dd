"""Every path in a bucket: the whole user cycle against a real GCS emulator (fake-gcs-server on
localhost) gives bit for bit the result of the same cycle on local disk, and writes nothing
outside the bucket. Then the bad inputs: a bucket that does not exist, no credentials."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from etils import epath
from gcs_emulator import client_env, running_emulator

from configs.pretrain import sweep as pretrain_sweep
from electra_jax import prepare, storage
from electra_jax.convert import __main__ as convert
from electra_jax.data import dataset, dataset_format, pydocs, shard_cache
from electra_jax.data.sources import parse_corpus
from electra_jax.errors import UserError
from electra_jax.files.model_io import load_model
from electra_jax.finetune import __main__ as finetune
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.train.checkpoints import RunCheckpoints
from launch import report, sweep
from launch.kill_campaign import one_cpu_device_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")  # absolute: the commands run in an empty folder
BUCKET = "bucket"
STEPS = 8
SWEEP_RUN = sweep.run_name(pretrain_sweep("tiny")[0])  # the pre-training run is a sweep's run
# Fields of results.json that differ between two identical runs (paths, wall time).
RUN_SPECIFIC = ("init_from", "data_dir", "seconds", "workdir", "predictions", "export")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs"), (BUCKET,)) as server:
        yield server


@pytest.fixture
def in_bucket(emulator, monkeypatch, tmp_path):
    """This process and its children talk to the emulator; the local cache is a fresh folder."""
    for key, value in {**emulator.env(), "ELECTRA_JAX_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    storage._check_bucket.cache_clear()
    with client_env(emulator):
        yield emulator
    storage._check_bucket.cache_clear()


def corpus_text(builtin_data_dir: str) -> str:
    """~250 KB of the built-in corpus, cut at a blank line (its text is cached beside it)."""
    text = pydocs.pydocs_text(os.path.dirname(builtin_data_dir))
    return text[: text.index("\n\n", 250_000) + 2]


def pretrain_argv(root: str) -> list[str]:
    overrides = {
        "data.dir": f"{root}/data", "max_seq_len": 64, "batch_size": 16, "eval_batches": 0,
        "num_train_steps": STEPS, "warmup_steps": 2, "checkpoint_every": 2, "log_every": 2,
        "eval_every": STEPS, "model.num_layers": 1, "keep_checkpoints": 2,
    }  # fmt: skip
    command = [sys.executable, "-m", "electra_jax.pretrain", f"--config={CONFIGS}/pretrain.py:tiny",
               f"--workdir={root}/sweep/{SWEEP_RUN}"]  # fmt: skip
    return command + [f"--config.{k}={v}" for k, v in overrides.items()]


def run_cycle(root: str, text: str, tasks_dir: str, log: Path, watch: Path | None) -> str:
    """prepare -> pretrain (SIGKILLed once its first checkpoint is committed when `watch`, the
    checkpoint folder's local view, is given) -> resume -> export -> finetune -> convert --to=hf
    -> report -> sweep --summarize, every path under `root`. Returns the pretrain output."""
    storage.make_dirs(root)
    storage.write_atomic(f"{root}/corpus.txt", text)
    storage.copy_tree(tasks_dir, f"{root}/glue")
    prepare.main([f"--corpus={root}/corpus.txt", "--train-vocab=wordpiece", "--vocab-size=2000",
                  "--max-seq-len=64", f"--output={root}/data", "--quiet"])  # fmt: skip
    env = one_cpu_device_env()
    workdir = f"{root}/sweep/{SWEEP_RUN}"
    if watch is not None:
        with open(log, "w") as out:
            proc = subprocess.Popen(pretrain_argv(root), cwd=log.parent, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
            try:
                deadline = time.monotonic() + 300
                while not list(watch.glob("*/commit_success.txt")) and proc.poll() is None:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
            finally:  # also when the wait fails: no trainer is left running
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, log.read_text()
    done = subprocess.run(pretrain_argv(root), cwd=log.parent, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    finetune.main([
        f"--config={CONFIGS}/finetune.py:task=builtin_replaced,size=tiny", f"--workdir={root}/ft",
        f"--config.init_from={workdir}", f"--config.data_dir={root}/glue", "--config.seeds=1",
        "--config.max_seq_len=32", "--config.batch_size=16", "--config.max_train_examples=64",
        "--config.num_epochs=1.0", "--config.log_every=2", "--config.eval_batch_size=100",
    ])  # fmt: skip
    convert.main(["--to=hf", f"--input={workdir}/export", f"--output={root}/hf"])
    with contextlib.redirect_stdout(io.StringIO()):
        report.main([f"--runs={root}", f"--out={root}/report", "--paper-row=none"])
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        sweep.main(
            [f"--config={CONFIGS}/pretrain.py:tiny", f"--workdir={root}/sweep", "--summarize"]
        )
    assert f"| {SWEEP_RUN} |" in summary.getvalue() and "| finished" in summary.getvalue()
    return (log.read_text() if watch is not None else "") + done.stdout + done.stderr


def read_bytes(path: str) -> bytes:
    return epath.Path(path).read_bytes()


def assert_same_params(remote: str, local: str) -> None:
    remote_params, local_params = load_model(remote)[1], load_model(local)[1]
    for (path, a), (_, b) in zip(jax.tree.leaves_with_path(remote_params),
                                 jax.tree.leaves_with_path(local_params), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def results(root: str) -> dict:
    found = json.loads(read_bytes(f"{root}/ft/results.json"))
    return {k: v for k, v in found.items() if k not in RUN_SPECIFIC}


def test_cycle_in_bucket_equals_local_cycle(
    in_bucket, builtin_data_dir, tmp_path, monkeypatch
):  # fmt: skip
    text = corpus_text(builtin_data_dir)
    tasks = ensure_builtin_tasks(train=200, dev=100, test=20, cache_dir=str(tmp_path / "tasks"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a stray local write (a `gs:` folder) would land here
    bucket_root = f"gs://{BUCKET}/cycle"
    bucket_dir = in_bucket.root / BUCKET / "cycle"  # the emulator's view of the same objects
    watch = bucket_dir / "sweep" / SWEEP_RUN / "checkpoints"
    output = run_cycle(bucket_root, text, tasks, cwd / "pretrain.log", watch)
    assert "resume: from step" in output, output  # the SIGKILL landed after a checkpoint
    assert "ArrayRecord's reader cannot read gs://bucket/cycle/data directly" in output
    assert "gcsfuse" in output
    local_root = str(tmp_path / "local")
    run_cycle(local_root, text, tasks, tmp_path / "local.log", None)
    assert sorted(os.listdir(cwd)) == ["pretrain.log"]  # nothing written outside the bucket

    run = f"sweep/{SWEEP_RUN}"
    for name in ("data/meta.json", "corpus.txt", f"{run}/config.json", f"{run}/metrics.jsonl",
                 f"{run}/export/model.json", "ft/results.json", "ft/config.json",
                 "hf/model.safetensors", "hf/config.json", "report/report.md",
                 "report/report.json", "sweep/summary.md"):  # fmt: skip
        assert (bucket_dir / name).is_file(), name
    assert any(p.stat().st_size for p in (bucket_dir / run / "tensorboard").glob("events.*"))
    assert [r["step"] for r in map(json.loads, (bucket_dir / run / "metrics.jsonl").open())] == [
        2, 4, 6, 8]  # fmt: skip

    # Bit for bit: the exported model, the fine-tuning results, the converted HF weights.
    assert_same_params(f"{bucket_root}/{run}/export", f"{local_root}/{run}/export")
    assert results(bucket_root) == results(local_root)
    if storage.is_file(f"{bucket_root}/ft/export/model.json"):  # fine-tuning exports its model
        assert_same_params(f"{bucket_root}/ft/export", f"{local_root}/ft/export")
    hf = "hf/model.safetensors"
    assert read_bytes(f"{bucket_root}/{hf}") == read_bytes(f"{local_root}/{hf}")
    for name in ("data/train-00000-of-00001.array_record", "report/report.md"):
        remote, local = read_bytes(f"{bucket_root}/{name}"), read_bytes(f"{local_root}/{name}")
        assert remote.replace(bucket_root.encode(), b"") == local.replace(local_root.encode(), b"")


def test_corpus_folder_and_glob_in_a_bucket(in_bucket):
    for name in ("a.txt", "sub/b.txt", ".hidden", "c.md"):
        storage.write_atomic(f"gs://{BUCKET}/corpus/{name}", "One sentence.\n")
    folder = parse_corpus(f"gs://{BUCKET}/corpus/")[0].paths
    assert folder == tuple(f"gs://{BUCKET}/corpus/{n}" for n in ("a.txt", "c.md", "sub/b.txt"))
    assert parse_corpus(f"gs://{BUCKET}/corpus/*.txt")[0].paths == (f"gs://{BUCKET}/corpus/a.txt",)
    with pytest.raises(UserError, match="no file matches"):
        parse_corpus(f"gs://{BUCKET}/corpus/*.json")


def test_interrupted_dataset_upload_is_redone_on_rerun(in_bucket, monkeypatch, tmp_path):
    """prepare uploads meta.json last: killed mid-upload, the bucket holds no dataset (readers
    say so), and the same command uploads the staged copy again instead of rebuilding it."""
    corpus, output = tmp_path / "corpus.txt", f"gs://{BUCKET}/interrupted"
    corpus.write_text("".join(f"Sentence number {i} of a small test corpus.\n" for i in range(300)))
    args = [f"--corpus={corpus}", "--train-vocab=wordpiece", "--vocab-size=120",
            "--max-seq-len=16", f"--output={output}", "--eval-examples=2"]  # fmt: skip
    real_copy = dataset.copy_tree

    def killed_before_meta(source: str, target: str, last: str | None = None) -> None:
        os.rename(f"{source}/{last}", f"{source}/held")  # everything but the commit file
        real_copy(source, target)
        os.rename(f"{source}/held", f"{source}/{last}")
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "copy_tree", killed_before_meta)
    with pytest.raises(SystemExit):
        prepare.main(args)
    with pytest.raises(UserError, match="is not a prepared dataset"):
        dataset_format.read_meta(output)
    monkeypatch.setattr(dataset, "copy_tree", real_copy)
    monkeypatch.setattr(dataset, "run_chunks", lambda *a: pytest.fail("rebuilt the dataset"))
    prepare.main(args)
    meta = dataset_format.read_meta(output)
    assert meta["splits"]["eval"]["examples"] == 2
    assert not os.path.exists(dataset.staging_dir(output))


def test_remote_shards_too_big_for_the_cache_name_gcsfuse(in_bucket, monkeypatch):
    """ArrayRecord reads local files only: remote shards that do not fit the local cache stop
    with one line naming the fix (written by the cycle test's bucket, or a fresh prepare)."""
    data = f"gs://{BUCKET}/cycle/data"
    if not storage.is_file(f"{data}/meta.json"):
        pytest.skip("needs the cycle test's dataset")  # only when run alone with -k
    monkeypatch.setattr(shard_cache, "free_bytes", lambda folder: 1000)
    with pytest.raises(UserError) as info:
        dataset_format.split_paths(dataset_format.read_meta(data), data, "train")
    message = str(info.value)
    assert "\n" not in message and "ArrayRecord's reader cannot read a bucket" in message
    assert "gcsfuse" in message and "ELECTRA_JAX_CACHE" in message


def test_unreadable_step_is_moved_aside_in_a_bucket(in_bucket):
    """RunCheckpoints' fallback renames a corrupt step remotely too (gcsfs: copy + delete)."""
    directory = f"gs://{BUCKET}/moved/checkpoints"
    for step in (3, 5):  # committed steps on GCS carry commit_success.txt (else Orbax drops them)
        storage.write_atomic(f"{directory}/{step}/state/_METADATA", "corrupt")
        storage.write_atomic(f"{directory}/{step}/commit_success.txt", "")
    checkpoints = RunCheckpoints(directory, keep=2, async_save=False)
    try:
        assert list(checkpoints.manager.all_steps()) == [3, 5]
        moved, again = checkpoints._move_aside(3), checkpoints._move_aside(5)
        assert list(checkpoints.manager.all_steps()) == []
    finally:
        checkpoints.close()
    folder = in_bucket.root / BUCKET / "moved" / "checkpoints"
    assert moved == f"{directory}/3.unreadable" and again == f"{directory}/5.unreadable"
    assert (folder / "3.unreadable/state/_METADATA").read_text() == "corrupt"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [f"{step}.unreadable/{name}" for step in (3, 5)
                     for name in ("commit_success.txt", "state/_METADATA")]  # fmt: skip


def run_cli(module: str, argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_missing_bucket_is_one_line_and_writes_nothing(in_bucket, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = run_cli("electra_jax.prepare", ["--corpus=builtin:pydocs", "--train-vocab=wordpiece",
                   "--vocab-size=100", "--output=gs://no-such-bucket/data"], cwd, env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "bucket gs://no-such-bucket does not exist" in proc.stderr, proc.stderr
    assert "gcloud storage buckets create gs://no-such-bucket" in proc.stderr
    assert not os.listdir(cwd) and not (tmp_path / "cache").exists()
    assert sorted(p.name for p in in_bucket.root.iterdir() if p.is_dir()) == [BUCKET]


def test_no_credentials_is_one_line_and_writes_nothing(tmp_path):
    """A real gs:// path, no emulator, no credentials anywhere (no ADC file, no gcloud config,
    a metadata server that refuses): one line before anything is written."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}  # fmt: skip
    env |= {"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
            "ELECTRA_JAX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": REPO}  # fmt: skip
    argv = [f"--config={CONFIGS}/pretrain.py:tiny", "--workdir=gs://some-bucket/run"]
    proc = run_cli("electra_jax.pretrain", argv, cwd, dict(env, JAX_PLATFORMS="cpu", XLA_FLAGS=""))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no Google Cloud credentials found" in proc.stderr, proc.stderr
    assert "gcloud auth application-default login" in proc.stderr
    assert not os.listdir(cwd) and not (tmp_path / "cache").exists()
