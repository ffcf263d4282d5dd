"""The pre-training program of a config: its dataclasses, mesh, model, state shardings and the
jitted step. The trainer, the benchmarks and the compile check all build it here, so what they
time or compile is exactly what the trainer runs."""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from electra_jax.config_fields import build
from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train import sharding as shd
from electra_jax.train.objective import ObjectiveConfig
from electra_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer
from electra_jax.train.step import (
    StepConfig,
    TrainState,
    create_train_state,
    make_multi_step,
    make_train_step,
)


def build_configs(
    config: ml_collections.ConfigDict, special_ids: dict[str, int]
) -> tuple[ModelConfig, ObjectiveConfig, OptimizerConfig]:
    """The model, objective and optimiser dataclasses from the config's sections."""
    model_cfg = build(ModelConfig, config.model, "config.model")
    if config.max_seq_len > model_cfg.max_position_embeddings:
        raise UserError(
            f"max_seq_len={config.max_seq_len} exceeds model.max_position_embeddings="
            f"{model_cfg.max_position_embeddings}; lower --config.max_seq_len"
        )
    objective = build(
        ObjectiveConfig, config.objective, "config.objective",
        electra_objective=model_cfg.electra_objective, **special_ids,
    )  # fmt: skip
    objective.check_model(model_cfg)
    optimizer = build(
        OptimizerConfig, config.optimizer, "config.optimizer",
        learning_rate=config.learning_rate, num_train_steps=config.num_train_steps,
        warmup_steps=config.warmup_steps,
    )  # fmt: skip
    return model_cfg, objective, optimizer


@dataclasses.dataclass
class TrainProgram:
    """Everything the loop needs to run `step(state, batch) -> (state, metrics)`."""

    config: ml_collections.ConfigDict
    model_cfg: ModelConfig
    objective: ObjectiveConfig
    model: ElectraModel
    mesh: Mesh
    tx: optax.GradientTransformation
    param_sh: Any
    state_sh: Any
    state_shapes: TrainState  # jax.ShapeDtypeStruct leaves
    batch_sh: NamedSharding
    step: Any  # jitted: state donated, in/out shardings fixed

    def init_state(self, edit_params: Callable[[Any], Any] | None = None) -> TrainState:
        """Fresh sharded parameters (optionally edited, e.g. `init_from`) and optimiser state."""
        init = lambda r: nn.unbox(init_params(self.model, r))
        params = jax.jit(init, out_shardings=self.param_sh)(jax.random.key(self.config.seed))
        if edit_params is not None:
            params = edit_params(params)
        make_state = jax.jit(lambda p: create_train_state(p, self.tx), out_shardings=self.state_sh)
        return make_state(params)

    def abstract_state(self) -> TrainState:
        """The state as shapes, dtypes and shardings only (restore targets, compile checks)."""
        with_sharding = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
        return jax.tree.map(with_sharding, self.state_shapes, self.state_sh)

    def batch_spec(self, keys: Sequence[str]) -> dict[str, jax.ShapeDtypeStruct]:
        """One call's batch: [B, L] int32 arrays, [K, B, L] with K steps per call."""
        c = self.config
        lead = (c.steps_per_call,) if c.steps_per_call > 1 else ()
        shape = (*lead, c.batch_size, c.max_seq_len)
        return {k: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=self.batch_sh) for k in keys}

    def compile(self, keys: Sequence[str]) -> Any:
        """The step compiled ahead of the loop for batches with `keys`."""
        return self.step.lower(self.abstract_state(), self.batch_spec(keys)).compile()


def build_program(
    config: ml_collections.ConfigDict,
    special_ids: dict[str, int],
    devices: Sequence[jax.Device] | None = None,
) -> TrainProgram:
    """The program of `config` on `devices` (default: the first `mesh.num_devices` devices)."""
    model_cfg, objective, opt_cfg = build_configs(config, special_ids)
    if devices is None and config.mesh.num_devices > 0:
        devices = jax.devices()[: config.mesh.num_devices]
    mesh = shd.make_mesh(config.mesh.data, config.mesh.fsdp, devices)
    model = ElectraModel(model_cfg, dtype=jnp.dtype(config.dtype), remat=config.remat)
    schedule = learning_rate_schedule(opt_cfg)
    tx = make_optimizer(opt_cfg, schedule=schedule)
    abstract_boxed = jax.eval_shape(lambda r: init_params(model, r), jax.random.key(0))
    param_sh = shd.param_shardings(abstract_boxed, mesh)
    state_shapes = jax.eval_shape(lambda p: create_train_state(p, tx), nn.unbox(abstract_boxed))
    state_sh = shd.state_shardings(tx, state_shapes, param_sh, mesh)
    step_cfg = StepConfig(
        seed=config.seed, grad_accum_steps=config.grad_accum_steps,
        nonfinite_test_step=config.nonfinite_test_step, rng_impl=config.rng_impl,
    )  # fmt: skip
    K = config.steps_per_call
    train_step = make_multi_step(make_train_step(model, objective, tx, step_cfg, schedule), K)
    batch_sh = shd.batch_sharding(mesh, extra_leading_dims=1 if K > 1 else 0)
    step = jax.jit(
        train_step, in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, shd.replicated(mesh)), donate_argnums=0,
    )  # fmt: skip
    return TrainProgram(
        config, model_cfg, objective, model, mesh, tx, param_sh, state_sh, state_shapes,
        batch_sh, step,
    )  # fmt: skip
