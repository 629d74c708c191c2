"""The prefix-cache family contract in tensor mode (issue 15).

The stateful machines of RadixCache, SWARadixCache and MambaRadixCache run again
with token ids and KV indices given as int32 or int64 torch tensors: every match,
``all_values_flatten`` and every index freed into the pool must come back as a
tensor of the cache's index format with the values the NumPy path (the model)
gives, and the hostile inserts (float, bool, uint64, short, nested tensors) must
fail and change nothing (see ``tests/prefix_contract.py``).
"""

from __future__ import annotations

import pytest
from hypothesis import settings

pytest.importorskip("torch")

from tests.test_mamba_radix_cache import MambaMachine
from tests.test_radix_cache import RadixMachine, RadixMachinePage4
from tests.test_swa_radix_cache import SWAMachinePaged

_FEW = settings(max_examples=30, stateful_step_count=30, deadline=None)


class RadixInt32(RadixMachine):
    tensor_dtype = "int32"


class RadixPage4Int64(RadixMachinePage4):
    tensor_dtype = "int64"


class SWAPagedInt32(SWAMachinePaged):
    tensor_dtype = "int32"


class MambaInt64(MambaMachine):
    tensor_dtype = "int64"


TestRadixInt32 = pytest.mark.slow(RadixInt32.TestCase)
TestRadixInt32.settings = _FEW
TestRadixPage4Int64 = pytest.mark.slow(RadixPage4Int64.TestCase)
TestRadixPage4Int64.settings = _FEW
TestSWAPagedInt32 = pytest.mark.slow(SWAPagedInt32.TestCase)
TestSWAPagedInt32.settings = _FEW
TestMambaInt64 = pytest.mark.slow(MambaInt64.TestCase)
TestMambaInt64.settings = _FEW
