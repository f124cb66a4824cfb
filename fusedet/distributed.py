"""Sharding a command's pairs across the processes of a ``torchrun`` launch.

``torchrun --nproc_per_node N $(which fusedet) evaluate|fuse ...`` starts N copies of the command,
with ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. Each copy works
on its share of the pairs (on its own GPU when there are GPUs: fusedet.devices.resolve_device maps a
bare ``cuda`` to ``cuda:LOCAL_RANK``) and rank 0 puts the shares together. This module is the one
place that knows about it:

- `current()`: this process's `World` (size, rank); a single process outside torchrun. Under
  torchrun the first call in a fusedet.runtime session connects to the launch's key-value store
  (torch.distributed.TCPStore: torchrun's own, or one rank 0 serves when the processes were started
  another way) and the end of the outermost session disconnects. Only barriers and small objects
  travel through it; images and detections go through the shared output folder and cache.
- `World.shard(items, block)`: this process's contiguous share of a list, in whole blocks (a
  detector batch), the first ``blocks % size`` processes one block more; the shares in rank order
  are the list.
- `World.barrier()`, `World.broadcast(obj)` (rank 0's object everywhere), `World.gather(obj)` (every
  rank's object, in rank order, everywhere), `World.agree(value, what)` (InputError unless every
  rank has the same value). Every process must make the same calls in the same order.

torch's default process group is deliberately left alone: libraries that see one initialised
(ultralytics synchronises its settings and datasets through ``dist.barrier`` then) would wait for
processes that never join them. A process waits at a barrier for the others up to `TIMEOUT` (a rank
fusing a large share while the others resume finished ones can take hours); when a process fails,
torchrun stops the others.
"""

from __future__ import annotations

import datetime
import os
import pickle
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fusedet import runtime
from fusedet.errors import InputError

TIMEOUT = datetime.timedelta(hours=24)
LEAVE_TIMEOUT_S = 300.0  # how long a rank 0 that serves the store waits for the others to disconnect

_lock = threading.Lock()
_world: World | None = None
_joins = 0  # sessions joined by this process: each gets fresh keys in the store


def shard_bounds(count: int, size: int, rank: int, block: int = 1) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s share of `count` items split over `size` processes in whole
    blocks of `block` items (the last block may be short); the first ``blocks % size`` ranks get one
    block more than the others. Raises ValueError for a rank outside [0, size) or a block < 1."""
    if size < 1 or not 0 <= rank < size or block < 1:
        raise ValueError(f"bad shard: rank {rank} of {size}, block {block}")
    blocks = -(-count // block)
    base, extra = divmod(blocks, size)
    first = rank * base + min(rank, extra)
    last = first + base + (rank < extra)
    return min(first * block, count), min(last * block, count)


class _StoreComm:
    """Collectives over a key-value store: round n of rank r is key ``n/r`` holding a pickled object."""

    def __init__(self, store: Any, size: int, rank: int) -> None:
        self.store, self.size, self.rank = store, size, rank
        self.round = 0
        self.mine: list[str] = []  # keys this rank set and has not deleted yet

    def _put(self, obj: Any) -> str:
        self.round += 1
        key = f"{self.round}/{self.rank}"
        self.store.set(key, pickle.dumps(obj))
        self.mine.append(key)
        return key

    def gather(self, obj: Any) -> list:
        own = self._put(obj)
        keys = [f"{self.round}/{r}" for r in range(self.size)]
        self.store.wait(keys, TIMEOUT)
        out = [pickle.loads(v) for v in self.store.multi_get(keys)]
        # every rank has reached this round, so has read every earlier one: this rank's older keys can go
        for key in self.mine[:-1]:
            self.store.delete_key(key)
        self.mine = [own]
        return out

    def broadcast(self, obj: Any) -> Any:
        if self.rank == 0:
            self._put(obj)
            return obj
        self.round += 1
        key = f"{self.round}/0"
        self.store.wait([key], TIMEOUT)
        return pickle.loads(self.store.get(key))


@dataclass
class World:
    """The processes of one launch: `size` of them, this one is `rank` (0: the main process, which
    reports and writes the merged results), `local_rank` on its machine. `comm` carries the
    collectives (None for one process)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    comm: _StoreComm | None = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether more than one process shares the work."""
        return self.size > 1

    def shard(self, items: Sequence, block: int = 1, rank: int | None = None) -> list:
        """Rank `rank`'s (default: this process's) share of `items` (see shard_bounds)."""
        start, stop = shard_bounds(len(items), self.size, self.rank if rank is None else rank, block)
        return list(items[start:stop])

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.comm is not None:
            self.comm.gather(None)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` (picklable), returned on every rank."""
        return obj if self.comm is None else self.comm.broadcast(obj)

    def gather(self, obj: Any) -> list:
        """Every rank's `obj` (picklable), in rank order, returned on every rank (a barrier too)."""
        return [obj] if self.comm is None else self.comm.gather(obj)

    def agree(self, value: Any, what: str) -> None:
        """InputError unless every rank passes an equal `value` (what the processes must share, e.g.
        a hash of the evaluated pairs); `what` names it in the message."""
        values = self.gather(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            raise InputError(f"the {self.size} processes of this launch disagree on {what} (ranks {differ} differ from rank 0): "
                             "run every process on the same data and options")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None


def from_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment (1, 0, 0 without it). Raises
    InputError for values that do not fit together, or a multi-process launch without MASTER_ADDR."""
    size, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise InputError(f"torchrun environment: RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={size}")
    if size > 1 and not os.environ.get("MASTER_ADDR"):
        raise InputError(f"WORLD_SIZE={size} but MASTER_ADDR is not set: launch the processes with torchrun")
    return size, rank, local


def current() -> World:
    """This process's World (see the module docstring). Under torchrun the first call in a
    fusedet.runtime session connects to the launch's store (every process must call it) and the end
    of the outermost session disconnects. Raises InputError when the store cannot be reached."""
    global _world, _joins
    size, rank, local = from_env()
    if size == 1:
        return World()
    with _lock:
        if _world is not None:
            return _world
        if not runtime.active():
            raise RuntimeError("fusedet.distributed.current() joins a launch only inside a fusedet.runtime.session()")
        import torch.distributed as dist

        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        host, port = os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 29500)
        serve = rank == 0 and not agent
        try:
            store = dist.TCPStore(host, port, size, is_master=serve, timeout=TIMEOUT, wait_for_workers=False)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"rank {rank}: cannot reach the launch's store at {host}:{port} ({exc})") from None
        _joins += 1
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        prefixed = dist.PrefixStore(f"fusedet/{restart}/{_joins}/", store)
        _world = World(size, rank, local, _StoreComm(prefixed, size, rank))
        runtime.on_exit(lambda: _leave(prefixed, serve, size))
        return _world


def _leave(prefixed: Any, serve: bool, size: int) -> None:
    """Disconnect; a rank 0 that serves the store first waits (a while) for the others to be done with it."""
    global _world
    with _lock:
        _world = None
    try:
        prefixed.add("left", 1)
        deadline = time.monotonic() + LEAVE_TIMEOUT_S
        while serve and prefixed.add("left", 0) < size and time.monotonic() < deadline:
            time.sleep(0.05)
    except RuntimeError:  # the store is gone (its server stopped): nothing to wait for
        pass


def is_main_process() -> bool:
    """Whether this process is rank 0 of its launch (True outside torchrun); reads the environment
    only, without joining anything (for what a command prints)."""
    try:
        return from_env()[1] == 0
    except InputError:
        return True
