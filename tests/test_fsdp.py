"""FSDP really shards: on the 8-device mesh each weight's device-local shard is 1/N of it along
the dimension its logical axes name, the Adam moments are laid out like their parameters, and a
dimension the fsdp axis does not divide stays replicated (train/sharding.py, `_fit_spec`)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs.pretrain import get_config
from electra_jax.model.electra import init_params
from electra_jax.train.optimizer import ScaleByAdamState
from electra_jax.train.program import build_program

SPECIAL_IDS = {"cls_id": 2, "sep_id": 3, "mask_id": 4}
# The design (train/sharding.py): the big dimensions (vocab, hidden, mlp) go over `fsdp`, each
# mesh axis on at most one dimension of a weight, vocab before hidden before mlp; every other
# logical axis (embed, heads, kv, position, token_type, norm, ...) is replicated.
FSDP_PRIORITY = ("vocab", "hidden", "mlp")


def tiny(mesh: tuple[int, int], **model):
    config = get_config("tiny")
    config.max_seq_len, config.batch_size = 64, 16
    config.mesh.data, config.mesh.fsdp = mesh
    config.model.update(model)
    return config


def flat(tree) -> dict[str, object]:
    return {jax.tree_util.keystr(p): x for p, x in jax.tree.leaves_with_path(tree)}


def logical_axes(program) -> dict[str, tuple]:
    boxed = jax.eval_shape(lambda r: init_params(program.model, r), jax.random.key(0))
    specs = nn.get_partition_spec(boxed)
    is_spec = lambda x: isinstance(x, jax.sharding.PartitionSpec)
    return {jax.tree_util.keystr(p): tuple(s)
            for p, s in jax.tree.leaves_with_path(specs, is_leaf=is_spec)}  # fmt: skip


def sharded_dim(axes: tuple, shape: tuple[int, ...], fsdp: int) -> int | None:
    """The dimension split over `fsdp`, or None: replicated (also when fsdp does not divide the
    chosen dimension: the fallback, not a move to another dimension)."""
    for name in FSDP_PRIORITY:
        if name in axes:
            dim = axes.index(name)
            return dim if shape[dim] % fsdp == 0 else None
    return None


def expected_shard_shape(shape: tuple[int, ...], dim: int | None, fsdp: int) -> tuple:
    return tuple(s // fsdp if i == dim else s for i, s in enumerate(shape))


def check_layout(x: jax.Array, dim: int | None, fsdp: int, where: str) -> None:
    """Every device holds 1/fsdp of `x` along `dim` (the full array when None); the fsdp
    distinct pieces tile the array."""
    shards = x.addressable_shards
    assert len(shards) == jax.device_count() == 8, where
    for shard in shards:
        assert shard.data.shape == expected_shard_shape(x.shape, dim, fsdp), where
    pieces = {tuple((s.start, s.stop) for s in shard.index) for shard in shards}
    assert len(pieces) == (fsdp if dim is not None else 1), where


def adam_state(state) -> ScaleByAdamState:
    found = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda s: isinstance(
        s, ScaleByAdamState)) if isinstance(s, ScaleByAdamState)]  # fmt: skip
    assert len(found) == 1
    return found[0]


def check_program(config) -> tuple[dict[str, int | None], dict[str, tuple[int, ...]]]:
    """Builds the program, initialises its state; checks the layout of every parameter and of
    both Adam moments. Returns each parameter's sharded dimension and its shape."""
    program = build_program(config, SPECIAL_IDS)
    fsdp = config.mesh.fsdp
    assert dict(program.mesh.shape) == {"data": config.mesh.data, "fsdp": fsdp}
    axes = logical_axes(program)
    state = program.init_state()
    params, adam = flat(state.params), adam_state(state)
    assert axes.keys() == params.keys()
    dims = {}
    for name, x in params.items():
        dims[name] = dim = sharded_dim(axes[name], x.shape, fsdp)
        check_layout(x, dim, fsdp, f"param {name} {axes[name]} {x.shape}")
    for moment in ("mu", "nu"):
        moments = flat(getattr(adam, moment))
        assert moments.keys() == params.keys()
        for name, m in moments.items():
            assert m.shape == params[name].shape
            assert m.sharding.is_equivalent_to(params[name].sharding, m.ndim), (moment, name)
            check_layout(m, dims[name], fsdp, f"{moment} {name}")
    return dims, {name: x.shape for name, x in params.items()}


@pytest.mark.parametrize("mesh", [(1, 8), (4, 2)], ids=["fsdp8", "data4xfsdp2"])
def test_every_large_weight_and_its_adam_moments_are_split_over_fsdp(mesh):
    dims, shapes = check_program(tiny(mesh))
    # The ones that matter, spelled out (tiny: V 8192, E 32, H 64, FFN 256).
    assert dims["['embeddings']['word_embeddings']"] == 0  # [vocab, embed]
    assert dims["['generator_head']['output_bias']"] == 0  # [vocab]
    assert dims["['discriminator']['embeddings_project']['kernel']"] == 1  # [embed, hidden]
    layer = "['discriminator']['layer_1']"
    assert dims[f"{layer}['attention']['query']['kernel']"] == 0  # [hidden, heads, kv]
    assert dims[f"{layer}['attention']['output']['kernel']"] == 2  # [heads, kv, hidden]
    assert dims[f"{layer}['intermediate']['kernel']"] == 0  # [hidden, mlp]: hidden first
    assert dims[f"{layer}['intermediate']['bias']"] == 0  # [mlp]
    assert dims[f"{layer}['output']['kernel']"] == 1  # [mlp, hidden]
    assert dims["['embeddings']['position_embeddings']"] is None  # [position, embed]
    assert dims[f"{layer}['output_LayerNorm']['scale']"] is None  # [norm]
    # Apart from the position table, every weight of 1024 elements or more is split: a device
    # holds little more than 1/fsdp of the parameters.
    big = [n for n, shape in shapes.items() if np.prod(shape) >= 1024 and "position" not in n]
    assert len(big) > 20 and all(dims[name] is not None for name in big)
    total = sum(int(np.prod(shape)) for shape in shapes.values())
    local = sum(int(np.prod(shape)) // (mesh[1] if dims[n] is not None else 1)
                for n, shape in shapes.items())  # fmt: skip
    assert local < 1.1 * total / mesh[1] + 128 * 32, (local, total)


@pytest.mark.parametrize("mesh", [(1, 8), (4, 2)], ids=["fsdp8", "data4xfsdp2"])
def test_dimension_the_fsdp_axis_does_not_divide_falls_back_to_replicated(mesh):
    """vocab 8191 (odd) divides neither fsdp=8 nor 2; hidden 68 (generator 34) divides 2 but not
    8. Such a weight is replicated whole: its vocab or hidden dimension is not sharded, and fsdp
    does not move to another dimension of it (an `intermediate` kernel [68, 272] stays whole)."""
    fsdp = mesh[1]
    dims, _ = check_program(tiny(mesh, vocab_size=8191, hidden_size=68))
    assert dims["['embeddings']['word_embeddings']"] is None
    assert dims["['generator_head']['output_bias']"] is None
    for tower in ("discriminator", "generator"):
        kernel = dims[f"['{tower}']['layer_0']['intermediate']['kernel']"]
        assert kernel == (0 if fsdp == 2 else None), tower
        assert dims[f"['{tower}']['layer_0']['intermediate']['bias']"] == 0  # 272, 136: divide
