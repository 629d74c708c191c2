"""LangChain, LlamaIndex and Haystack retrievers over RetrievalPipeline, with the real
packages (the test extra installs them): each framework's retriever API and document
type, our scores and metadata, filters, top_k, save/load; missing extras."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llmds.integrations._common import require
from llmds.retrieval_pipeline import RetrievalPipeline

TEXTS = ["red apples are sweet", "green apples are sour", "red cars are fast",
         "blue cars are slow", "apple pie recipe", "the red planet mars"]
METAS = [{"kind": "fruit", "year": 2001}, {"kind": "fruit", "year": 2005},
         {"kind": "car", "year": 2010}, {"kind": "car", "year": 2015},
         {"kind": "food", "year": 2020}, {"kind": "space", "year": 1999}]


class Letters:
    """A tiny deterministic embedding (bag of letters), framework-free."""

    def vec(self, text):
        out = np.zeros(8)
        for ch in text.lower().replace(" ", ""):
            out[ord(ch) % 8] += 1.0
        out[0] += 0.5
        return (out / np.linalg.norm(out)).tolist()


def _expected(pipe, query, k, filt=None):
    return pipe.search(query, top_k=k, filter=filt)


# ------------------------------------------------------------------ LangChain
def test_langchain_retriever_contract(tmp_path):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever

    from llmds.integrations.langchain import LLMDSRetriever

    class LE(Embeddings):
        def embed_documents(self, texts):
            return [Letters().vec(t) for t in texts]

        def embed_query(self, text):
            return Letters().vec(text)

    ids = [f"id{i}" for i in range(len(TEXTS))]
    r = LLMDSRetriever.from_texts(TEXTS, LE(), metadatas=METAS, ids=ids, k=3)
    assert isinstance(r, BaseRetriever)
    docs = r.invoke("red apples")
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
    want = _expected(r.pipeline, "red apples", 3)
    assert [(d.id, d.metadata["score"]) for d in docs] == want
    assert docs[0].page_content == TEXTS[int(docs[0].id[2:])]
    assert {k: v for k, v in docs[0].metadata.items() if k != "score"} == METAS[
        int(docs[0].id[2:])]
    cars = r.invoke("red", filter={"kind": "car"}, k=5)
    assert {d.id for d in cars} == {"id2", "id3"}
    assert len(r.invoke("apples", k=1)) == 1
    assert r.batch(["red", "cars"]) == [r.invoke("red"), r.invoke("cars")]
    new = r.add_texts(["a red kite"], [{"kind": "toy", "year": 2021}])
    assert r.invoke("kite", k=1)[0].id == new[0]
    r.save(tmp_path / "lc")
    again = LLMDSRetriever.load(tmp_path / "lc", LE(), k=3)
    assert again.invoke("red apples") == r.invoke("red apples")
    lexical = LLMDSRetriever.load(tmp_path / "lc", None, k=3)  # explicit: lexical only
    assert [d.id for d in lexical.invoke("kite")][:1] == new


def test_langchain_without_embeddings_is_lexical():
    pytest.importorskip("langchain_core")
    from llmds.integrations.langchain import LLMDSRetriever

    r = LLMDSRetriever.from_texts(TEXTS, metadatas=METAS, k=2)
    assert next(d.page_content for d in r.invoke("cars slow")) == TEXTS[3]


# ------------------------------------------------------------------ LlamaIndex
@pytest.mark.slow
def test_llamaindex_retriever_contract(tmp_path):
    pytest.importorskip("llama_index.core")
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.core.vector_stores.types import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from llmds.integrations.llamaindex import LLMDSRetriever, to_llmds_filter

    r = LLMDSRetriever.from_texts(TEXTS, MockEmbedding(embed_dim=8), metadatas=METAS,
                                  top_k=3, ids=[f"n{i}" for i in range(6)])
    assert isinstance(r, BaseRetriever)
    nodes = r.retrieve("red apples")
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert [(n.node.id_, n.score) for n in nodes] == _expected(r.pipeline, "red apples", 3)
    assert nodes[0].node.metadata == METAS[int(nodes[0].node.id_[1:])]
    flt = MetadataFilters(filters=[
        MetadataFilter(key="year", value=2005, operator=FilterOperator.GTE),
        MetadataFilters(filters=[MetadataFilter(key="kind", value="car"),
                                 MetadataFilter(key="kind", value="food")],
                        condition=FilterCondition.OR)])
    assert to_llmds_filter(flt) == {"$and": [{"year": {"$gte": 2005}}, {
        "$or": [{"kind": {"$eq": "car"}}, {"kind": {"$eq": "food"}}]}]}
    filtered = LLMDSRetriever(r.pipeline, top_k=5, filters=flt).retrieve("red")
    assert {n.node.id_ for n in filtered} <= {"n2", "n3", "n4"} and filtered
    with pytest.raises(ValueError, match="not supported"):
        to_llmds_filter(MetadataFilters(filters=[MetadataFilter(
            key="kind", value="x", operator=FilterOperator.TEXT_MATCH)]))
    vec = r.pipeline.embedder.embed_queries(["red apples"])[0]
    given = r.retrieve(QueryBundle("red apples", embedding=vec.tolist()))
    assert [n.node.id_ for n in given] == [n.node.id_ for n in nodes]
    r.save(tmp_path / "li")
    again = LLMDSRetriever.load(tmp_path / "li", MockEmbedding(embed_dim=8), top_k=3)
    assert [(n.node.id_, n.score) for n in again.retrieve("red apples")] == [
        (n.node.id_, n.score) for n in nodes]


# ------------------------------------------------------------------ Haystack
def test_haystack_component_contract(tmp_path):
    pytest.importorskip("haystack")
    from haystack import Document, Pipeline

    from llmds.integrations.haystack import LLMDSRetriever, to_llmds_filter

    pipe = RetrievalPipeline(embedding_dim=8, metric="ip")
    letters = Letters()
    pipe.add_documents([f"h{i}" for i in range(6)], TEXTS,
                       np.array([letters.vec(t) for t in TEXTS]), METAS)
    r = LLMDSRetriever(pipe, top_k=3)
    out = r.run(query="red apples", query_embedding=letters.vec("red apples"))["documents"]
    assert all(isinstance(d, Document) for d in out)
    want = pipe.search("red apples", np.array(letters.vec("red apples")), top_k=3)
    assert [(d.id, d.score) for d in out] == want
    assert out[0].content == TEXTS[int(out[0].id[1:])]
    assert out[0].meta == METAS[int(out[0].id[1:])]
    hs_filter = {"operator": "AND", "conditions": [
        {"field": "meta.kind", "operator": "in", "value": ["car", "space"]},
        {"field": "meta.year", "operator": "<", "value": 2012}]}
    assert to_llmds_filter(hs_filter) == {"$and": [{"kind": {"$in": ["car", "space"]}},
                                                   {"year": {"$lt": 2012}}]}
    got = r.run(query="red", filters=hs_filter, top_k=5)["documents"]
    assert {d.id for d in got} == {"h2", "h5"}
    with pytest.raises(ValueError, match="meta"):
        r.run(query="red", filters={"field": "content", "operator": "==", "value": "x"})
    hp = Pipeline()
    hp.add_component("retriever", r)
    assert hp.run({"retriever": {"query": "cars"}})["retriever"]["documents"] == r.run(
        query="cars")["documents"]
    r.save(tmp_path / "hs")
    again = LLMDSRetriever.load(tmp_path / "hs", top_k=3)
    assert again.run(query="cars")["documents"] == r.run(query="cars")["documents"]


# ------------------------------------------------------------------ extras
def test_missing_extra_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'llmds\[langchain\]'"):
        require("llmds_no_such_module", "langchain", "langchain-core")


@pytest.mark.slow
def test_importing_llmds_imports_no_framework():
    code = ("import sys, llmds, llmds.integrations, llmds.retrieval_pipeline\n"
            "bad = [m for m in ('langchain_core', 'llama_index', 'haystack', 'torch') "
            "if m in sys.modules]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"
