"""The index contract (tests/index_contract.py) run over HNSW, InvertedIndex and
RetrievalPipeline: one state machine, three adapters."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.index_contract import HNSWAdapter, IndexMachine, InvertedIndexAdapter, PipelineAdapter

SETTINGS = settings(max_examples=25, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class HNSWContract(IndexMachine):
    adapter = HNSWAdapter()


class InvertedIndexContract(IndexMachine):
    adapter = InvertedIndexAdapter()


class PipelineContract(IndexMachine):
    adapter = PipelineAdapter()


TestHNSWContract = pytest.mark.slow(HNSWContract.TestCase)
TestInvertedIndexContract = pytest.mark.slow(InvertedIndexContract.TestCase)
TestPipelineContract = pytest.mark.slow(PipelineContract.TestCase)
for _case in (TestHNSWContract, TestInvertedIndexContract, TestPipelineContract):
    _case.settings = SETTINGS
del _case
