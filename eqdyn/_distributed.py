"""Scaling out on JAX's own machinery: a device mesh for data parallelism, `jax.distributed`
for several processes (hosts).

Nothing here is a scheme of eqdyn's own. Data parallelism is GSPMD: the batch axis of every
per-batch array is constrained to a `NamedSharding` over a one-axis `Mesh` ("batch"), the
parameters, optimiser state, persistent particles and data set are replicated, and XLA inserts
the collectives (the gradient's sum over the batch and the steady-state residual's max over the
batch become all-reduces). The numbers are those of one device up to the order of floating-point
sums. Several processes join one mesh through `jax.distributed.initialize`; on CPU the
cross-process collectives are gloo's (JAX's default `jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

import re

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._errors import ConfigError

__all__ = ["initialize", "check_devices", "resolve_devices", "DataParallel", "to_host",
           "is_writer"]


def initialize(coordinator: str | None, num_processes: int | None,
               process_id: int | None) -> bool:
    """Join a multi-process JAX job (`jax.distributed.initialize`); must run before any other
    JAX use in the process. Returns `False` (and does nothing) when no argument is given.

    **Arguments:**

    - `coordinator`: `"HOST:PORT"` of process 0's coordination service (every process passes the
      same address; process 0 listens on it).
    - `num_processes`: how many processes take part (`P`).
    - `process_id`: this process's index in `0 .. P-1`.
    """
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    if all(v is None for v in given.values()):
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ConfigError(
            f"multi-process training needs `coordinator`, `num_processes` and `process_id` "
            f"together; {', '.join(f'`{k}`' for k in missing)} missing (got "
            f"{', '.join(f'{k}={v!r}' for k, v in given.items() if v is not None)}). Pass all "
            "three, e.g. --coordinator node0:12355 --num-processes 2 --process-id 0."
        )
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", str(coordinator)):
        raise ConfigError(f"`coordinator`={coordinator!r} must be HOST:PORT, e.g. "
                          "'127.0.0.1:12355' or 'node0:12355'.")
    if not (isinstance(num_processes, int) and num_processes >= 1):
        raise ConfigError(f"`num_processes`={num_processes!r} must be a positive integer.")
    if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
        raise ConfigError(f"`process_id`={process_id!r} must be an integer in 0..{num_processes - 1}"
                          f" (`num_processes`={num_processes}).")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except RuntimeError as exc:
        raise ConfigError(
            f"jax.distributed.initialize(coordinator={coordinator!r}, num_processes="
            f"{num_processes}, process_id={process_id}) failed: {exc}. It must run before any "
            "other JAX use, once per process."
        ) from exc
    return True


def check_devices(devices) -> None:
    """Check the form of a `devices` setting (`None`, `"all"` or a positive integer) without
    touching the JAX backend (which `jax.distributed.initialize` must precede)."""
    if devices is None or devices == "all":
        return
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"`devices`={devices!r} must be 'all' or a positive integer (the "
                          "number of devices to shard the batch over).")


def parse_devices(text: str | None):
    """`--devices` on the command line: `all`, a positive integer, or nothing."""
    if text is None or text == "all":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"`--devices`={text!r} must be 'all' or a positive integer.")
    return n


def resolve_devices(devices, *, divides: int | None = None, what: str = "batch_size") -> list:
    """The devices a `devices` setting names: all of `jax.devices()`, or the first `N`.

    With `divides`, the device count must divide it (the global batch is split evenly).
    """
    check_devices(devices)
    available = jax.devices()
    if devices is None:
        return available[:1]
    n = len(available) if devices == "all" else devices
    if n > len(available):
        platform = available[0].platform
        raise ConfigError(
            f"`devices`={devices} but only {len(available)} {platform} device(s) are available "
            f"({jax.process_count()} process(es)); use --devices all or at most "
            f"{len(available)}. On CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "(set before JAX starts) makes N host devices."
        )
    if jax.process_count() > 1 and n != len(available):
        raise ConfigError(
            f"`devices`={devices}: with {jax.process_count()} processes the mesh must hold every "
            f"process's devices ({len(available)} in all); use --devices all."
        )
    if divides is not None and divides % n:
        lo = max(k for k in range(1, n + 1) if divides % k == 0)
        raise ConfigError(
            f"`{what}`={divides} is not divisible by the {n} devices of `devices`={devices!r}; "
            f"each device takes an equal share. Use a {what} that is a multiple of {n} (e.g. "
            f"{-(-divides // n) * n}) or devices={lo}."
        )
    return available[:n]


def is_writer() -> bool:
    """Whether this process writes files (process 0 of a multi-process job, or the only one)."""
    return jax.process_index() == 0


def _put(a, sharding: NamedSharding):
    """`a` as a global array with `sharding` (works across processes: every process passes the
    same full value and contributes the shards its devices hold)."""
    if not eqx.is_array(a):
        return a
    if isinstance(a, jax.Array) and a.sharding == sharding:
        return a
    host = np.asarray(to_host(a))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def to_host(tree):
    """Fetch a pytree of (possibly global, multi-process) arrays as NumPy arrays."""
    from jax.experimental import multihost_utils

    def one(a):
        if not isinstance(a, jax.Array) or a.is_fully_addressable:
            return np.asarray(a) if eqx.is_array(a) else a
        if a.is_fully_replicated:
            return np.asarray(a.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree_util.tree_map(one, tree)


class BatchConstraint(eqx.Module):
    """Inside a jitted step: shard the leading (batch) axis over the mesh's first axis."""

    sharding: NamedSharding = eqx.field(static=True)

    def __call__(self, tree):
        return jax.lax.with_sharding_constraint(tree, self.sharding)


class DataParallel:
    """A one-axis mesh over `devices`: `split` for arrays whose leading axis is spread over the
    devices (a batch, or a stack of runs), `replicate` for everything else."""

    def __init__(self, devices, axis: str = "batch"):
        self.mesh = Mesh(np.asarray(devices), (axis,))
        self.n = len(devices)
        self.split_sharding = NamedSharding(self.mesh, P(axis))
        self.replicated = NamedSharding(self.mesh, P())
        self.constraint = BatchConstraint(self.split_sharding)

    def replicate(self, tree):
        """Every array leaf of `tree`, replicated on every device of the mesh."""
        return jax.tree_util.tree_map(lambda a: _put(a, self.replicated), tree)

    def split(self, tree):
        """Every array leaf of `tree`, its leading axis split over the devices of the mesh."""
        return jax.tree_util.tree_map(lambda a: _put(a, self.split_sharding), tree)

    def round_up(self, n: int) -> int:
        """The smallest multiple of the device count that is >= `n`."""
        return -(-n // self.n) * self.n
