"""Cloud TPU slice names (`v4-32`, `v5litepod-16`, `v5p-8`, `v6e-8`) -> the chips, their HBM
and libtpu's topology description, whose compile-only devices let any machine compile for them.

Names follow Cloud TPU's accelerator types: v4 and v5p count TensorCores (two per chip, one
megacore device each), v5e (`v5litepod-N`, also written `v5e-N`) and v6e count chips. Shapes
and HBM per chip from the Cloud TPU docs (tpu/docs/v4, v5e, v5p, v6e; checked 2026-11-29):
v4 32 GiB, v5e 16 GiB, v5p 95 GiB, v6e 32 GiB.
"""

import dataclasses
import os
from collections.abc import Sequence

import jax
from jax.experimental import topologies

from electra_jax.errors import UserError

GiB = 2**30
LIBTPU_INSTALL = "pip install libtpu==0.0.42.1 (or pip install -r requirements-dev.txt)"


@dataclasses.dataclass(frozen=True)
class Generation:
    """One TPU generation: libtpu's name, the Cloud name prefix, HBM per chip, how the suffix
    counts (cores per chip) and the chip grids of its slices."""

    topology_prefix: str  # libtpu's `v4:2x2x1`
    cloud_prefix: str  # Cloud TPU's `v4-8`
    hbm_bytes: int
    cores_per_chip: int  # the Cloud suffix counts these
    shapes: tuple[str, ...]  # chip grids of the usual slices
    chip_config: str = ""  # libtpu option: megacore = one device per two-core chip
    aliases: tuple[str, ...] = ()

    def chips(self, shape: str) -> int:
        n = 1
        for d in shape.split("x"):
            n *= int(d)
        return n


GENERATIONS = (
    Generation("v4", "v4", 32 * GiB, 2, ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8",
               "4x8x8", "8x8x8"), chip_config="megacore"),
    Generation("v5e", "v5litepod", 16 * GiB, 1, ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8",
               "8x16", "16x16"), aliases=("v5e",)),
    Generation("v5p", "v5p", 95 * GiB, 2, ("2x2x1", "2x2x2", "2x4x4", "4x4x4", "4x4x8",
               "4x8x8", "8x8x8")),
    Generation("v6e", "v6e", 32 * GiB, 1, ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16",
               "16x16")),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Slice:
    """A named TPU slice: `v5litepod-16` = 16 v5e chips in a 4x4 grid, 16 GiB each."""

    name: str  # as Cloud TPU writes it
    topology: str  # as libtpu writes it
    chips: int
    hbm_bytes: int
    chip_config: str


def known_slices() -> dict[str, Slice]:
    """Every slice name this module knows, Cloud names and libtpu names alike."""
    table: dict[str, Slice] = {}
    for g in GENERATIONS:
        for shape in g.shapes:
            chips = g.chips(shape)
            cloud = f"{g.cloud_prefix}-{chips * g.cores_per_chip}"
            s = Slice(cloud, f"{g.topology_prefix}:{shape}", chips, g.hbm_bytes, g.chip_config)
            for alias in (cloud, *(f"{a}-{chips * g.cores_per_chip}" for a in g.aliases)):
                table[alias] = s
            table[s.topology] = s
    return table


def parse_slice(name: str) -> Slice:
    """The slice of a Cloud TPU accelerator type or a libtpu topology; else a one-line error."""
    table = known_slices()
    if name in table:
        return table[name]
    cloud = sorted({s.name for s in table.values()}, key=lambda n: (n.split("-")[0], len(n), n))
    raise UserError(
        f"unknown TPU topology {name!r}; pass --topology as Cloud TPU names it, one of "
        f"{', '.join(cloud)} (v5e-N is v5litepod-N; or libtpu's form, e.g. v4:2x2x1)"
    )


def quiet_libtpu_env(s: Slice) -> None:
    """libtpu looks for a TPU VM's metadata at start-up and warns when there is none: tell it
    which slice this process stands for (one host, this one). Compile-only use touches no TPU,
    so several such processes may load libtpu at once (it otherwise takes a machine-wide lock,
    /tmp/libtpu_lockfile)."""
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", s.name)
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def slice_devices(s: Slice) -> Sequence[jax.Device]:
    """The slice's compile-only devices (one per chip): jit can lower and compile for them on
    any machine with libtpu installed; they cannot run anything."""
    try:
        import libtpu  # noqa: F401  (only to tell a missing wheel from a bad topology)
    except ImportError:
        raise UserError(f"compiling for a TPU slice needs libtpu: {LIBTPU_INSTALL}") from None
    quiet_libtpu_env(s)
    options = {"chip_config_name": s.chip_config} if s.chip_config else {}
    try:
        desc = topologies.get_topology_desc(topology_name=s.topology, platform="tpu", **options)
    except Exception as e:  # libtpu's errors are long; keep the first line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(
            f"libtpu cannot describe topology {s.topology} ({s.name}): {first}"
        ) from None
    devices = list(desc.devices)
    if len(devices) != s.chips:
        raise UserError(
            f"libtpu gave {len(devices)} devices for {s.name} ({s.topology}), expected one per "
            f"chip ({s.chips}); check the libtpu version: {LIBTPU_INSTALL}"
        )
    return devices
