import bm25s
import pytest
import Stemmer

from llmds.analysis import ENGLISH_STOPWORDS, TOKEN_PATTERNS, Analyzer


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


def test_spec_names_every_option_and_round_trips():
    a = Analyzer(lowercase=False, token_pattern=r"\w+", stopwords=["b", "a"], stemmer="porter")
    spec = a.spec()
    assert spec == {"name": "llmds.Analyzer", "version": 1, "lowercase": False,
                    "token_pattern": "word1", "stopwords": ["a", "b"], "stemmer": "porter"}
    b = Analyzer.from_spec(spec)
    assert b("Running A b Cats") == a("Running A b Cats")
    assert Analyzer().spec()["token_pattern"] == "word2"
    for name, regex in TOKEN_PATTERNS.items():
        assert Analyzer(token_pattern=regex).spec()["token_pattern"] == name
    # not nameable: a custom regex or tokenizer
    assert Analyzer(token_pattern=r"[a-z]+").spec() is None
    assert Analyzer(tokenizer=str.split).spec() is None


@pytest.mark.parametrize("change", [
    {"token_pattern": r"(\w+\s?)+$"}, {"token_pattern": r"\w\w+"}, {"stemmer": "klingon"},
    {"stemmer": ["english"]}, {"stopwords": "french"}, {"stopwords": [None]},
    {"lowercase": "yes"}, {"name": "x"}, {"version": True}, {"extra": 1},
])
def test_from_spec_accepts_only_fixed_options(change):
    spec = {**Analyzer().spec(), **change}
    with pytest.raises(ValueError, match="analyzer"):
        Analyzer.from_spec(spec)
    with pytest.raises(ValueError, match="analyzer spec must be an object"):
        Analyzer.from_spec([spec])


def test_named_patterns_are_linear_on_hostile_text():
    """No named pattern backtracks: a long adversarial text analyses quickly."""
    import time

    text = ("a " * 20_000) + "!" + ("\u00e9" * 20_000)
    for regex in TOKEN_PATTERNS.values():
        start = time.perf_counter()
        Analyzer(token_pattern=regex, stemmer=None)(text)
        assert time.perf_counter() - start < 2  # generous: catastrophic would be minutes


def test_lone_surrogates_are_rejected_with_the_argument_named():
    bad = "ab" + chr(0xD800)
    with pytest.raises(ValueError, match="text must be valid Unicode"):
        Analyzer(token_pattern=r"\S+")(bad)
    with pytest.raises(ValueError, match=r"tokens\[0\] must be valid Unicode"):
        Analyzer().normalize([bad])
