"""Device mesh, logical-axis rules and the shardings of parameters and batches.

Parameters carry logical names (`vocab`, `hidden`, `mlp`, ...); `LOGICAL_RULES` map them to
the mesh axes `data` and `fsdp`. A dimension that the mesh axis does not divide stays
replicated, so any config runs on any device count.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from electra_jax.errors import UserError

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")
# Fully-sharded data parallel: the big dimension of every weight over `fsdp`; the rest replicated.
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES), ("vocab", "fsdp"), ("hidden", "fsdp"), ("mlp", "fsdp"),
    ("embed", None), ("heads", None), ("kv", None), ("hidden_out", None), ("position", None),
    ("token_type", None), ("norm", None),
)  # fmt: skip


def make_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh; one axis may be -1 to take the remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    if data == -1 and fsdp == -1:
        raise UserError("mesh.data and mesh.fsdp are both -1; set at most one of them to -1")
    if data == -1:
        data = n // max(fsdp, 1)
    if fsdp == -1:
        fsdp = n // max(data, 1)
    if data < 1 or fsdp < 1 or data * fsdp != n:
        raise UserError(
            f"mesh data={data} x fsdp={fsdp} does not use the {n} available devices; "
            f"set --config.mesh.data and --config.mesh.fsdp so that their product is {n}"
        )
    return Mesh(np.asarray(devices).reshape(data, fsdp), MESH_AXES)


def _fit_spec(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Drops mesh axes from dimensions they do not divide evenly."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        fitted.append(axes if names and dim % size == 0 else None)
    return PartitionSpec(*fitted)


def param_shardings(boxed_params: Any, mesh: Mesh, rules: Sequence = LOGICAL_RULES) -> Any:
    """NamedShardings for a tree of `nn.LogicallyPartitioned` (or abstract) parameters."""
    logical_specs = nn.get_partition_spec(boxed_params)
    shapes = jax.tree.map(lambda x: tuple(x.shape), nn.unbox(boxed_params))

    def to_sharding(logical: PartitionSpec, shape: tuple[int, ...]) -> NamedSharding:
        mesh_spec = nn.logical_to_mesh_axes(logical, rules)
        return NamedSharding(mesh, _fit_spec(mesh_spec, shape, mesh))

    is_spec = lambda x: isinstance(x, PartitionSpec)
    return jax.tree.map(to_sharding, logical_specs, shapes, is_leaf=is_spec)


def state_shardings(tx: Any, state_shapes: Any, param_sh: Any, mesh: Mesh) -> Any:
    """A TrainState of shardings: the parameters and every parameter-shaped optimiser tree (the
    Adam moments) as `param_sh`, the scalars (steps, counts) replicated."""
    rep = replicated(mesh)
    opt_sh = optax.tree_utils.tree_map_params(
        tx, lambda _, sharding: sharding, state_shapes.opt_state, param_sh,
        transform_non_params=lambda _: rep,
    )  # fmt: skip
    return jax.tree.map(lambda _: rep, state_shapes).replace(params=param_sh, opt_state=opt_sh)


def batch_sharding(mesh: Mesh, extra_leading_dims: int = 0) -> NamedSharding:
    """Batch dimension over every mesh axis; `extra_leading_dims` for stacked micro-steps."""
    return NamedSharding(mesh, PartitionSpec(*([None] * extra_leading_dims), BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict:
    """Host-local numpy arrays -> global jax.Arrays laid out on the mesh (multi-host safe)."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }
