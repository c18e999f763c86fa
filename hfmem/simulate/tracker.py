"""An allocator-level memory tracker for fake tensors.

Every aten op reaches ``__torch_dispatch__`` below autograd, so the tracker sees each op's outputs,
including the ones autograd saves and the gradients it produces. A tensor's memory is its *storage*:
views, in-place results and ``AccumulateGrad``'s stolen gradients share one, so each new storage is
counted once, when it first appears, and released when it dies.

How a death is noticed: torch keeps a storage's Python object alive for as long as the C++ StorageImpl
lives ("PyObject preservation", the same mechanism tensors use), so a ``weakref.finalize`` on
``t.untyped_storage()`` runs exactly when the StorageImpl is freed. This holds for FakeTensor storages
too (they are meta storages); the exactness tests in tests/test_simulate.py check it against the real
CPU allocator. torch.distributed._tools.mem_tracker.MemTracker relies on the same property.

Why not MemTracker itself: it updates the stats of every module on every allocation (a 7B training step
takes about a minute). Here each allocation and each free is O(1): one dict operation, a running total,
a peak, and per-category totals (a storage's category is a tag changed in O(1) when, say, it becomes a
gradient).
"""

from __future__ import annotations

import weakref

import torch
from torch._subclasses.fake_tensor import DataDependentOutputException
from torch.utils._python_dispatch import TorchDispatchMode

from .result import ACTIVATIONS, CATEGORIES, OPTIMIZER_TEMPORARY

_LOCAL_SCALAR = torch.ops.aten._local_scalar_dense.default
HOST = "host"  # storages that a GPU run would keep in host memory: tracked, never counted


def _round_up(n: int, granularity: int) -> int:
    return -(-n // granularity) * granularity


def stand_in_scalar(t: torch.Tensor):
    """A value for ``.item()`` on a fake tensor whose data does not exist. Only used where the value
    steers scalar arithmetic, never shapes (optimizer steps: Adafactor's RMS scaling)."""
    if t.dtype == torch.bool:
        return True
    return 1.0 if t.is_floating_point() else 1


class MemoryTracker(TorchDispatchMode):
    """Running live bytes and peaks of every storage created by the ops it sees (and of those registered
    with ``track``). Enter it *inside* ``FakeTensorMode`` so that ops reach it first."""

    def __init__(self, granularity: int = 1):
        super().__init__()
        self.granularity = granularity  # 512 emulates the CUDA caching allocator's kMinBlockSize
        # storage key (StorageImpl address, unique while alive) -> [counted bytes, raw nbytes, category]
        self._entries: dict[int, list] = {}
        self.by_category: dict[str, int] = dict.fromkeys((*CATEGORIES, OPTIMIZER_TEMPORARY, HOST), 0)
        self.live = 0
        self.peak = 0
        self.peak_by_category: dict[str, int] = dict(self.by_category)
        self.peak_label = ""
        self.phase_peak = 0
        self.label = ""  # the current phase, recorded with the overall peak
        self.default_category = ACTIVATIONS
        self.stand_in_scalars = False  # answer .item() on data-less tensors (optimizer steps only)
        # Answer a truth value read from a data-less tensor with False in the model's forward and backward:
        # model code reads one for a validity check (``(labels >= vocab).any()``: valid data) or a random skip
        # (LayerDrop's ``torch.rand([]) < layerdrop``: the layer runs, the worst case). Numbers stay refused.
        self.bools_false = True
        # The last op that raised, and id() of its exception: only the id, because an exception that model
        # code catches would otherwise keep its traceback's tensors alive.
        self.failed_op = None
        self.failed_exc_id: int | None = None
        # Ops whose outputs a GPU run would place in host memory (set by the caller around the code
        # where that holds, e.g. torch.tensor(...) scalars in AdamW's step): tracked, counted as 0.
        self.host_ops: frozenset = frozenset()

    # -- dispatch ---------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        try:
            out = func(*args, **(kwargs or {}))
        except DataDependentOutputException as exc:
            if self.stand_in_scalars and func is _LOCAL_SCALAR:
                return stand_in_scalar(args[0])
            if self.bools_false and func is _LOCAL_SCALAR and args[0].dtype == torch.bool:
                return False
            self.failed_op, self.failed_exc_id = func, id(exc)
            raise
        except Exception as exc:
            self.failed_op, self.failed_exc_id = func, id(exc)  # named in the SimulationError
            raise
        self._see_outputs(out, HOST if func in self.host_ops else self.default_category)
        return out

    def _see_outputs(self, out, category: str) -> None:
        if isinstance(out, torch.Tensor):
            self._see(out, category)
        elif isinstance(out, (tuple, list)):  # multi-output ops, foreach ops (lists), or both
            for o in out:
                if isinstance(o, torch.Tensor):
                    self._see(o, category)
                elif isinstance(o, (tuple, list)):
                    self._see_outputs(o, category)

    def _see(self, t: torch.Tensor, category: str) -> None:
        storage = t.untyped_storage()
        entry = self._entries.get(storage._cdata)
        if entry is None:
            self._add(storage, category)
        elif entry[1] != storage.nbytes():  # resize_ / set_ grew or shrank an existing storage
            self._resize(entry, storage.nbytes())

    # -- bookkeeping ------------------------------------------------------------------------------
    def _add(self, storage, category: str) -> None:
        key = storage._cdata
        nbytes = storage.nbytes()
        counted = _round_up(nbytes, self.granularity) if category != HOST else 0
        self._entries[key] = [counted, nbytes, category]
        weakref.finalize(storage, self._release, key).atexit = False
        self._count(category, counted)

    def _count(self, category: str, delta: int) -> None:
        self.live += delta
        self.by_category[category] += delta
        if self.live > self.phase_peak:
            self.phase_peak = self.live
            if self.live >= self.peak:  # on a tie, the later (steady-state) moment describes the peak
                self.peak = self.live
                self.peak_by_category = dict(self.by_category)
                self.peak_label = self.label

    def _resize(self, entry: list, nbytes: int) -> None:
        counted = _round_up(nbytes, self.granularity) if entry[2] != HOST else 0
        delta, entry[0], entry[1] = counted - entry[0], counted, nbytes
        self._count(entry[2], delta)

    def _release(self, key: int) -> None:
        counted, _, category = self._entries.pop(key)
        self.live -= counted
        self.by_category[category] -= counted

    # -- public -----------------------------------------------------------------------------------
    def track(self, t: torch.Tensor, category: str) -> None:
        """Register a tensor created outside the tracker (parameters, buffers, inputs), or move an
        already tracked one to ``category``."""
        storage = t.untyped_storage()
        entry = self._entries.get(storage._cdata)
        if entry is None:
            self._add(storage, category)
        else:
            self.retag(t, category)

    def retag(self, t: torch.Tensor, category: str) -> None:
        """Move a tracked storage to another category (a gradient, an optimizer state, the KV cache)."""
        entry = self._entries.get(t.untyped_storage()._cdata)
        if entry is None or entry[2] == category or entry[2] == HOST:
            return
        self.by_category[entry[2]] -= entry[0]
        self.by_category[category] += entry[0]
        entry[2] = category

    def to_host(self, t: torch.Tensor) -> None:
        """Stop counting a storage that a GPU run keeps on the host (AdamW's step counters)."""
        entry = self._entries.get(t.untyped_storage()._cdata)
        if entry is None or entry[2] == HOST:
            return
        self.live -= entry[0]
        self.by_category[entry[2]] -= entry[0]
        entry[0], entry[2] = 0, HOST

    def category_of(self, t: torch.Tensor) -> str | None:
        entry = self._entries.get(t.untyped_storage()._cdata)
        return entry[2] if entry else None

    def counted_bytes(self, t: torch.Tensor) -> int:
        entry = self._entries.get(t.untyped_storage()._cdata)
        return entry[0] if entry else 0

    def start_phase(self, label: str) -> None:
        self.label = label
        self.phase_peak = self.live

    def retag_all(self, old: str, new: str) -> None:
        """Move every live storage of category ``old`` to ``new`` (O(live storages), at phase ends)."""
        for entry in self._entries.values():
            if entry[2] == old:
                self.by_category[old] -= entry[0]
                self.by_category[new] += entry[0]
                entry[2] = new

    def live_by_category(self) -> dict[str, int]:
        return categories_only(self.by_category)

    def peak_categories(self) -> dict[str, int]:
        return categories_only(self.peak_by_category)


def categories_only(totals: dict[str, int]) -> dict[str, int]:
    """The reported categories: the fixed ones, plus the others only when non-zero; never HOST."""
    return {k: v for k, v in totals.items() if k != HOST and (k in CATEGORIES or v)}
