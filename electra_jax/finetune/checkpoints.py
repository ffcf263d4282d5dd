"""Fine-tuning as a long job: each seed group's Orbax checkpoints (parameters, optimiser state
and last losses, seed axis first: `RunCheckpoints` without a data iterator, since the data
order and dropout are functions of seed and step), a record of each finished group (scores and
predictions, read back for results.json whether or not the run was interrupted), and per-seed
exports of which the median seed's becomes `export/`."""

import os
from collections.abc import Sequence
from typing import Any

import flax.struct
import ml_collections
import numpy as np
from etils import epath

from electra_jax.cli import flat_fields
from electra_jax.errors import UserError
from electra_jax.files.model_io import is_model_dir, save_model
from electra_jax.files.run_files import CONFIG_FILE, config_change, read_json
from electra_jax.model.config import ModelConfig
from electra_jax.storage import make_dirs, move_tree, remove_tree, write_json
from electra_jax.train.checkpoints import RunCheckpoints

CHECKPOINTS_DIR = "checkpoints"
GROUPS_DIR = "groups"  # one finished group's record: scores, predictions, last training loss
SEED_EXPORTS_DIR = "seed_exports"
EXPORT_DIR = "export"
# Fields that may change between a run and its resumption: none of them alters the numbers.
RESUMABLE_CHANGES = ("log_every", "compile_cache_dir", "checkpoint_every", "keep_checkpoints",
                     "write_predictions")  # fmt: skip


@flax.struct.dataclass
class GroupState:
    """What a seed group's checkpoint holds (arrays with a leading seed axis)."""

    params: Any
    opt_state: Any
    loss: Any  # [S]: the last step's training losses (results.json's train_loss)


def group_name(seeds: Sequence[int]) -> str:
    return f"seeds_{seeds[0]}-{seeds[-1]}"


def group_checkpoints(workdir: str, seeds: Sequence[int], keep: int) -> RunCheckpoints:
    """A group's checkpoints; on a pod each host holds the whole state and host 0 alone saves
    (the trainer's `save_checkpoints`), so no host waits for another."""
    directory = os.path.join(workdir, CHECKPOINTS_DIR, group_name(seeds))
    return RunCheckpoints(directory, keep, this_host_only=True)


def saved_step(workdir: str, seeds: Sequence[int]) -> int:
    """The newest checkpointed step of a seed group (0: none), read from the folder names."""
    folder = epath.Path(workdir, CHECKPOINTS_DIR, group_name(seeds))
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []
    return max(steps, default=0)


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """True when `workdir` holds progress of this run (checkpoints or finished groups); progress
    made under another config stops the run in one line, touching nothing."""
    started = any(epath.Path(workdir, d).exists() for d in (CHECKPOINTS_DIR, GROUPS_DIR))
    saved = read_json(os.path.join(workdir, CONFIG_FILE))
    if not started or saved is None:
        return False
    old, new = flat_fields(saved), flat_fields(config.to_dict())
    free = lambda key: key.split(".")[0] in RESUMABLE_CHANGES
    differ = tuple(k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))
    differ = tuple(k for k in differ if not free(k))
    if differ:
        change = config_change(workdir, config.to_dict(), differ)
        raise UserError(
            f"{workdir} holds a fine-tuning run with another config ({change}); nothing was "
            f"changed: rerun with the saved config ({CONFIG_FILE} there) or pick a new --workdir"
        )
    return True


def plain(value: Any) -> Any:
    """`value` as JSON values (numpy arrays and scalars, tuples) for a group record."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def group_record_path(workdir: str, seeds: Sequence[int]) -> str:
    return os.path.join(workdir, GROUPS_DIR, f"{group_name(seeds)}.json")


def read_group_record(workdir: str, seeds: Sequence[int]) -> dict | None:
    """A finished group's record, None when the group has not finished."""
    return read_json(group_record_path(workdir, seeds))


def finish_group(workdir: str, seeds: Sequence[int], record: dict, is_primary: bool) -> dict:
    """Writes the group's record (atomically), then drops its checkpoints; returns the record
    as read back, so an uninterrupted run and a resumed one go on from the same values."""
    path = group_record_path(workdir, seeds)
    if is_primary:
        make_dirs(os.path.dirname(path))
        write_json(path, plain(record))
        remove_tree(os.path.join(workdir, CHECKPOINTS_DIR, group_name(seeds)))
    return read_json(path) if is_primary else plain(record)


def export_seed(
    workdir: str, seed: int, params: Any, model_cfg: ModelConfig, tokenizer: Any, head: dict
) -> None:
    """One seed's fine-tuned model (encoder groups + `head` / `head_<task>` parts) with the head's
    description (`head` in model.json: kind, labels per task), for `convert --to=hf`."""
    parts = {**params["electra"], **{k: v for k, v in params.items() if k != "electra"}}
    directory = os.path.join(workdir, SEED_EXPORTS_DIR, str(seed))
    save_model(directory, parts, model_cfg, tokenizer, overwrite=True, extra={"head": head})


def keep_median_export(workdir: str, seed: int, seeds: Sequence[int]) -> str:
    """Moves the median seed's export to `export/` and removes the other seeds' exports."""
    target = os.path.join(workdir, EXPORT_DIR)
    source = os.path.join(workdir, SEED_EXPORTS_DIR, str(seed))
    if is_model_dir(source):
        remove_tree(target, first="model.json")
        move_tree(source, target)
    remove_tree(os.path.join(workdir, SEED_EXPORTS_DIR))
    return target
