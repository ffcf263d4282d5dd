"""The fine-tuner's own train step (finetune/trainer.py: its model, optimiser, seeds under vmap)
compiled for one chip of a TPU slice from any machine: the fine-tuner runs on one device, so a
chip's HBM is what it has. No data is read: the batch is abstract, [seeds, batch, max_seq_len].
"""

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import SingleDeviceSharding

from electra_jax.errors import UserError
from electra_jax.files.model_io import export_dir, read_model_config
from electra_jax.finetune.heads import finetune_model
from electra_jax.finetune.tasks import TaskSpec, get_task
from electra_jax.finetune.trainer import init_seed_params, make_steps, make_tx, validate_config
from electra_jax.model.config import ModelConfig, preset
from electra_jax.train.compile_plan import Plan, no_persistent_cache, read_plan

STEPS_FOR_SCHEDULE = 1000  # the schedule's length only sets constants in the compiled step


def model_config(config: ml_collections.ConfigDict) -> ModelConfig:
    """init_from's model.json (no parameters read), else the size's preset."""
    if config.init_from:
        return read_model_config(export_dir(config.init_from))
    try:
        return preset(config.size)
    except ValueError as e:
        raise UserError(f"--finetune-config: {e}") from e


def batch_shapes(spec: TaskSpec, group: int, B: int, L: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One training call's batch as finetune/features.py lays it out, with the seed axis."""
    rows = lambda dtype: jax.ShapeDtypeStruct((group, B, L), dtype)  # noqa: E731
    one = lambda dtype: jax.ShapeDtypeStruct((group, B), dtype)  # noqa: E731
    batch = {k: rows(jnp.int32) for k in ("input_ids", "input_mask", "segment_ids")}
    if spec.kind == "span":
        batch.update(start_positions=one(jnp.int32), end_positions=one(jnp.int32),
                     is_impossible=one(jnp.int32), answer_mask=rows(jnp.int32))  # fmt: skip
    elif spec.kind == "tagging":  # labels by word; the label count comes from the data
        batch.update(labels=rows(jnp.int32), labeled_positions=rows(jnp.int32),
                     labels_mask=rows(jnp.float32))  # fmt: skip
    else:
        batch["labels"] = one(jnp.float32 if spec.kind == "regression" else jnp.int32)
    return batch


def on_device(tree: Any, device: jax.Device) -> Any:
    sharding = SingleDeviceSharding(device)
    place = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)  # noqa: E731
    return jax.tree.map(place, tree)


def finetune_plan(config: ml_collections.ConfigDict, devices: Sequence[jax.Device]) -> tuple:
    """(Plan of the fine-tuning step on the slice's first chip, seeds per call, model size)."""
    validate_config(config)
    spec = get_task(config.task)
    model_cfg = model_config(config)
    num_labels = len(spec.labels) or 2  # tagging's come from its files: a stand-in (head only)
    model = finetune_model(model_cfg, spec.kind, num_labels, config, jnp.dtype(config.dtype))
    tx, _ = make_tx(config, STEPS_FOR_SCHEDULE, model_cfg.num_layers)
    train_step, _ = make_steps(model, spec, tx, config)
    B, L = config.batch_size, config.max_seq_len
    keys = ("input_ids", "input_mask", "segment_ids", "labeled_positions", "answer_mask")
    example = {k: jnp.zeros((2, L), jnp.int32) for k in keys}
    one = jax.eval_shape(lambda: init_seed_params(model, [0], example, None))
    n_params = sum(int(x.size) for x in jax.tree.leaves(one))
    group = config.seeds_per_group or max(1, int(config.vectorize_budget // max(n_params, 1)))
    group = min(group, config.seeds)  # as finetune/trainer.py's run() picks it
    params = jax.eval_shape(lambda: init_seed_params(model, list(range(group)), example, None))
    opt = jax.eval_shape(jax.vmap(tx.init), params)
    keys = jax.eval_shape(lambda: jnp.stack([jax.random.key(s) for s in range(group)]))
    args = on_device((params, opt, batch_shapes(spec, group, B, L), keys), devices[0])
    step = jax.ShapeDtypeStruct((), jnp.int32, sharding=SingleDeviceSharding(devices[0]))
    t0 = time.perf_counter()
    with no_persistent_cache():
        compiled = train_step.lower(*args, step).compile()
    plan: Plan = read_plan(compiled, {}, time.perf_counter() - t0)
    return plan, group, n_params
