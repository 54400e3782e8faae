"""losskit._memory.Recycler: memory comes back only when no view of it is alive, and is reused."""

from __future__ import annotations

import gc

import numpy as np

from losskit._memory import Recycler


def test_memory_is_reused_only_after_the_last_view_dies():
    recycler = Recycler(keep=2)
    first = recycler.empty(1 << 18, np.float64)  # 2 MiB: above the small-array cut
    address = first.__array_interface__["data"][0]
    view = first.reshape(512, 512).T
    del first
    gc.collect()
    second = recycler.empty(1 << 18, np.float64)
    second_address = second.__array_interface__["data"][0]
    assert second_address != address  # a view was alive: not handed out again
    view[0, 0] = 1.0  # and still valid
    del view, second
    gc.collect()
    third = recycler.empty(1 << 18, np.float64)
    assert third.__array_interface__["data"][0] in (address, second_address)
    assert third.flags.writeable


def test_small_arrays_are_plain_and_keep_is_a_bound():
    recycler = Recycler(keep=1)
    assert recycler.empty(10, np.float32).base is None
    blocks = [recycler.empty(1 << 18, np.float64) for _ in range(3)]
    del blocks
    gc.collect()
    assert sum(len(v) for v in recycler._free.values()) == 1


def test_a_freed_block_is_handed_out_again():
    recycler = Recycler(keep=2)
    block = recycler.empty(1 << 18, np.float64)
    address = block.__array_interface__["data"][0]
    del block
    gc.collect()
    again = recycler.empty(1 << 18, np.float64)
    assert again.__array_interface__["data"][0] == address
