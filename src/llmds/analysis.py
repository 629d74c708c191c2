"""Text analysis for BM25: lowercase, Unicode word split, English stopwords, Snowball stemming.

The default chain reproduces the token stream the reference figures in the datasets
README were measured with (bm25s with ``stopwords="en"`` and PyStemmer's English
stemmer): ``re.findall(r"\\w\\w+", text.lower())`` (Unicode ``\\w``; tokens of one
character are dropped), then the stopword filter, then Snowball English
("porter2") from PyStemmer, the C Snowball binding.

The stopword list :data:`ENGLISH_STOPWORDS` is Lucene's classic English stop set
(``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``, 33 words), which is also bm25s's
``STOPWORDS_EN``. It is deliberately short: scikit-learn's 318-word list removes
words such as "system" or "show" that carry meaning in technical queries.
"""

from __future__ import annotations

import copy
import pickle
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from llmds._validate import check_bool, check_text, show

__all__ = ["ENGLISH_STOPWORDS", "TOKEN_PATTERNS", "Analyzer"]

ENGLISH_STOPWORDS: frozenset[str] = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))

DEFAULT_TOKEN_PATTERN = r"\w\w+"

#: The token patterns a saved index may name (a file never supplies a regex: a
#: pattern such as ``(\w+\s?)+$`` would let a file make every query take seconds).
#: Each is linear-time in ``re``.
TOKEN_PATTERNS: dict[str, str] = {
    "word2": DEFAULT_TOKEN_PATTERN,  # words of two or more word characters (bm25s, sklearn)
    "word1": r"\w+",  # every run of word characters
    "nonspace": r"\S+",  # whitespace-separated chunks
}
_PATTERN_NAMES = {regex: name for name, regex in TOKEN_PATTERNS.items()}
SPEC_NAME = "llmds.Analyzer"
SPEC_VERSION = 1
_SPEC_KEYS = ("name", "version", "lowercase", "token_pattern", "stopwords", "stemmer")


def _stemmer_names() -> list[str]:
    import Stemmer  # PyStemmer: a declared runtime dependency

    return list(Stemmer.algorithms())


def _stem_words(language: str) -> Callable[[list[str]], list[str]]:
    import Stemmer

    return Stemmer.Stemmer(language).stemWords


def _rebuild(cls: type[Analyzer], config: dict[str, Any],
             tokenizer: Callable[[str], Iterable[str]] | None) -> Analyzer:
    """Unpickle an :class:`Analyzer` (or subclass) from its options and its tokenizer."""
    return cls(**config, tokenizer=tokenizer)


class Analyzer:
    """Callable ``text -> list[str]``: the same chain for documents and queries.

    Steps, each configurable:

    * ``lowercase`` (default True): ``str.lower()`` before splitting.
    * ``token_pattern`` (default ``r"\\w\\w+"``): a regex whose matches are the tokens
      (it may not have capturing groups or match the empty string);
      or ``tokenizer``, a callable ``str -> iterable of str`` that replaces the
      regex split (lowercasing still applies before it).
    * ``stopwords``: ``"english"`` (default, :data:`ENGLISH_STOPWORDS`), ``None``,
      or any iterable of words (compared after lowercasing, before stemming).
    * ``stemmer``: a Snowball language name for PyStemmer (default ``"english"``),
      or ``None`` for no stemming.

    Text must be a ``str`` that encodes to UTF-8 (a lone surrogate raises
    ``ValueError``). Cost: O(len(text)) plus one C stemmer call per token
    (PyStemmer caches stems). Memory: the compiled pattern and the stopword set.

    ``config()`` returns keyword arguments that rebuild the analyzer;
    :meth:`spec` returns the form ``InvertedIndex.save`` stores, which names every
    option from a fixed set (a token pattern of :data:`TOKEN_PATTERNS`, a PyStemmer
    language) and so is ``None`` for a custom ``tokenizer`` or ``token_pattern``:
    such an analyzer is passed again to ``InvertedIndex.load``.

    Thread safety: safe for concurrent use. The options never change after
    construction, and each thread stems with its own PyStemmer stemmer (a PyStemmer
    ``Stemmer`` keeps per-call state and "must not be called concurrently"). A custom
    ``tokenizer`` must itself be safe to call from several threads.

    Pickling and ``copy.deepcopy`` rebuild the analyzer from its options (and its
    ``tokenizer``, which must then be picklable: a lambda or a local function raises
    ``TypeError`` naming it); ``copy.copy`` returns the analyzer itself, which is
    immutable. A subclass with more state than the options overrides ``__reduce__``.

    >>> Analyzer()("The Running dogs ran; a cat-like x!")
    ['run', 'dog', 'ran', 'cat', 'like']
    """

    __slots__ = (
        "_findall", "_local", "_lowercase", "_stemmer_name", "_stop", "_stopwords_spec",
        "_token_pattern", "_tokenizer",
    )

    def __init__(
        self,
        *,
        lowercase: bool = True,
        token_pattern: str = DEFAULT_TOKEN_PATTERN,
        stopwords: str | Iterable[str] | None = "english",
        stemmer: str | None = "english",
        tokenizer: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        lowercase = check_bool(lowercase, "lowercase")
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"tokenizer must be callable or None, got {show(tokenizer)}")
        if not isinstance(token_pattern, str):
            raise TypeError(f"token_pattern must be a str (a regex), got {show(token_pattern)}")
        try:
            compiled = re.compile(token_pattern)
        except re.error as exc:
            raise ValueError(
                f"token_pattern {token_pattern!r} is not a valid regex: {exc}") from None
        if compiled.groups:
            raise ValueError(f"token_pattern must have no capturing groups (use (?:...)), "
                             f"got {token_pattern!r}")
        if compiled.fullmatch("") is not None:
            raise ValueError(f"token_pattern must not match the empty string, "
                             f"got {token_pattern!r}")
        stop, spec = self._stopword_set(stopwords, lowercase)
        if stemmer is not None:
            if not isinstance(stemmer, str):
                raise TypeError(f"stemmer must be a str or None, got {show(stemmer)}")
            known = _stemmer_names()
            if stemmer not in known:
                raise ValueError(
                    f"stemmer {stemmer!r} is not a Snowball language known to PyStemmer; "
                    f"known: {', '.join(known)}")
        self._lowercase = lowercase
        self._token_pattern = token_pattern
        self._findall = compiled.findall
        self._tokenizer = tokenizer
        self._stop = stop
        self._stopwords_spec = spec
        self._stemmer_name = stemmer
        self._local = threading.local()  # this thread's stemmer: .stem_words

    @staticmethod
    def _stopword_set(stopwords: object, lowercase: bool) -> tuple[frozenset[str], Any]:
        if isinstance(stopwords, str) and stopwords == "english":
            return ENGLISH_STOPWORDS, "english"
        if stopwords is None:
            return frozenset(), None
        if isinstance(stopwords, str):
            raise ValueError(
                f"stopwords must be 'english', None or a list of words, got {stopwords!r}")
        if isinstance(stopwords, bytes | bytearray) or not isinstance(stopwords, Iterable):
            raise TypeError(f"stopwords must be 'english', None or a list of words, "
                            f"got {show(stopwords)}")
        words = list(stopwords)
        for i, w in enumerate(words):
            if not isinstance(w, str):
                raise TypeError(f"stopwords[{i}] must be a str, got {show(w)}")
        stop = frozenset(w.lower() if lowercase else w for w in words)
        return stop, sorted(stop)

    def __call__(self, text: str) -> list[str]:
        """Analyse ``text`` into terms: ``normalize(split(text))``. O(len(text))."""
        return self._normalize(self.split(text))

    def split(self, text: str) -> list[str]:
        """Lowercase (if configured) and split into raw tokens. O(len(text))."""
        if type(text) is not str or not text.isascii():
            check_text(text, "text")
        if self._lowercase:
            text = text.lower()
        if self._tokenizer is None:
            return self._findall(text)
        return list(self._tokenizer(text))

    def normalize(self, tokens: list[str]) -> list[str]:
        """Drop stopwords and stem: each output term depends on one raw token only.

        That is what lets ``InvertedIndex`` cache raw token -> term id for queries.
        O(len(tokens)).
        """
        if isinstance(tokens, str | bytes) or not isinstance(tokens, list | tuple):
            raise TypeError(f"tokens must be a list of str, got {show(tokens)}")
        for i, t in enumerate(tokens):
            if type(t) is not str or not t.isascii():
                check_text(t, f"tokens[{i}]")
        return self._normalize(list(tokens))

    def _normalize(self, tokens: list[str]) -> list[str]:
        stop = self._stop
        if stop:
            tokens = [t for t in tokens if t not in stop]
        if self._stemmer_name is not None and tokens:
            try:
                stem_words = self._local.stem_words
            except AttributeError:  # first use in this thread
                stem_words = self._local.stem_words = _stem_words(self._stemmer_name)
            tokens = stem_words(tokens)
        return tokens

    # ------------------------------------------------------------------ copies
    def __reduce__(self) -> tuple[Any, ...]:
        tokenizer = self._tokenizer
        if tokenizer is not None:
            try:
                pickle.dumps(tokenizer)
            except Exception as exc:
                raise TypeError(f"cannot pickle this Analyzer: its tokenizer {show(tokenizer)} "
                                f"cannot be pickled ({exc}); use a module-level function"
                                ) from None
        return _rebuild, (type(self), self.config(), tokenizer)

    def __deepcopy__(self, memo: dict[int, Any]) -> Analyzer:
        return _rebuild(type(self), self.config(), copy.deepcopy(self._tokenizer, memo))

    def __copy__(self) -> Analyzer:
        return self

    @property
    def custom(self) -> bool:
        """True if a user tokenizer is plugged in (then ``config()`` cannot rebuild it)."""
        return self._tokenizer is not None

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild an equal analyzer: ``Analyzer(**config)``."""
        return {
            "lowercase": self._lowercase,
            "token_pattern": self._token_pattern,
            "stopwords": self._stopwords_spec,
            "stemmer": self._stemmer_name,
        }

    def spec(self) -> dict[str, Any] | None:
        """The stored form: name, version and options from fixed sets; or None. O(stopwords).

        ``None`` when the analyzer cannot be named: a custom ``tokenizer`` or a
        ``token_pattern`` outside :data:`TOKEN_PATTERNS`. :meth:`from_spec` rebuilds it.

        >>> Analyzer(stemmer=None).spec()["token_pattern"]
        'word2'
        """
        name = _PATTERN_NAMES.get(self._token_pattern)
        if self._tokenizer is not None or name is None:
            return None
        return {"name": SPEC_NAME, "version": SPEC_VERSION, "lowercase": self._lowercase,
                "token_pattern": name, "stopwords": self._stopwords_spec,
                "stemmer": self._stemmer_name}

    @classmethod
    def from_spec(cls, spec: object) -> Analyzer:
        """Rebuild an analyzer from :meth:`spec` output, trusting nothing. O(stopwords).

        Every option must come from its fixed set (the token pattern by name, the
        stemmer from PyStemmer's languages); anything else raises ``ValueError``
        naming the option, so a file can never supply a regex or code.
        """
        if not isinstance(spec, dict):
            raise ValueError(f"analyzer spec must be an object, got {show(spec)}")
        if sorted(spec) != sorted(_SPEC_KEYS):
            raise ValueError(f"analyzer spec must have the keys {', '.join(_SPEC_KEYS)}, "
                             f"got {', '.join(sorted(map(str, spec)))}")
        if spec["name"] != SPEC_NAME or type(spec["version"]) is not int \
                or spec["version"] != SPEC_VERSION:
            raise ValueError(f"analyzer spec names {show(spec['name'])} version "
                             f"{show(spec['version'])}; this llmds reads {SPEC_NAME!r} version "
                             f"{SPEC_VERSION}")
        if type(spec["lowercase"]) is not bool:
            raise ValueError(f"analyzer lowercase must be true or false, got "
                             f"{show(spec['lowercase'])}")
        pattern = spec["token_pattern"]
        if not isinstance(pattern, str) or pattern not in TOKEN_PATTERNS:
            raise ValueError(f"analyzer token_pattern must be one of "
                             f"{', '.join(map(repr, TOKEN_PATTERNS))}, got {show(pattern)}")
        stopwords = spec["stopwords"]
        if not (stopwords in (None, "english") or (
                isinstance(stopwords, list) and all(isinstance(w, str) for w in stopwords))):
            raise ValueError(f"analyzer stopwords must be 'english', null or a list of str, "
                             f"got {show(stopwords)}")
        stemmer = spec["stemmer"]
        if stemmer is not None and (not isinstance(stemmer, str)
                                    or stemmer not in _stemmer_names()):
            raise ValueError(f"analyzer stemmer must be null or a PyStemmer language, "
                             f"got {show(stemmer)}")
        try:
            return cls(lowercase=spec["lowercase"], token_pattern=TOKEN_PATTERNS[pattern],
                       stopwords=stopwords, stemmer=stemmer)
        except (TypeError, ValueError) as exc:  # e.g. a stopword with a lone surrogate
            raise ValueError(f"analyzer spec is invalid: {exc}") from None

    def __repr__(self) -> str:
        extra = ", tokenizer=<custom>" if self._tokenizer is not None else ""
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if k != "stopwords" or not isinstance(v, list))
        return f"Analyzer({args}{extra})"
