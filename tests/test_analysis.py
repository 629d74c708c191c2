import bm25s
import pytest
import Stemmer

from llmds.analysis import ENGLISH_STOPWORDS, Analyzer


def test_default_chain():
    assert Analyzer()("The Running dogs ran; a cat-like x! Naïve ÉCOLES") == [
        "run", "dog", "ran", "cat", "like", "naïv", "école"]


def test_stopwords_are_lucene_english_set_as_in_bm25s():
    from bm25s.stopwords import STOPWORDS_EN

    assert frozenset(STOPWORDS_EN) == ENGLISH_STOPWORDS
    assert len(ENGLISH_STOPWORDS) == 33


def test_same_stream_as_bm25s():
    texts = ["Microglia activation in the CNS; 0-dimensional biomaterials!",
             "Where are the Dogs running to? It's 2023, e.g. a_b c"]
    stemmer = Stemmer.Stemmer("english")
    ref = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False,
                         show_progress=False)
    analyzer = Analyzer()
    assert [analyzer(t) for t in texts] == ref


def test_configurable_steps():
    assert Analyzer(stopwords=None, stemmer=None)("The dogs") == ["the", "dogs"]
    assert Analyzer(stopwords=["dogs"], stemmer=None)("The DOGS") == ["the"]
    assert Analyzer(lowercase=False, stopwords=None, stemmer=None)("Ab cd") == ["Ab", "cd"]
    assert Analyzer(tokenizer=str.split, stemmer=None)("a-b the c") == ["a-b", "c"]
    assert Analyzer(token_pattern=r"\w+", stopwords=None, stemmer=None)("a b") == ["a", "b"]


def test_config_round_trip():
    a = Analyzer(stopwords=["x", "y"], stemmer=None)
    assert Analyzer(**a.config())("x zz") == a("x zz") == ["zz"]
    assert not a.custom and Analyzer(tokenizer=str.split).custom
    assert "Analyzer(" in repr(a)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [({"stemmer": "klingon"}, ValueError, "stemmer 'klingon'"),
     ({"stopwords": "french"}, ValueError, "stopwords"),
     ({"stopwords": [1]}, TypeError, "stopwords"),
     ({"token_pattern": "("}, ValueError, "token_pattern"),
     ({"tokenizer": 3}, TypeError, "tokenizer")],
)
def test_bad_config(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Analyzer(**kwargs)
