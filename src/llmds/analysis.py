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

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ENGLISH_STOPWORDS", "Analyzer"]

ENGLISH_STOPWORDS: frozenset[str] = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))

DEFAULT_TOKEN_PATTERN = r"\w\w+"


class Analyzer:
    """Callable ``text -> list[str]``: the same chain for documents and queries.

    Steps, each configurable:

    * ``lowercase`` (default True): ``str.lower()`` before splitting.
    * ``token_pattern`` (default ``r"\\w\\w+"``): a regex whose matches are the tokens;
      or ``tokenizer``, a callable ``str -> iterable of str`` that replaces the
      regex split (lowercasing still applies before it).
    * ``stopwords``: ``"english"`` (default, :data:`ENGLISH_STOPWORDS`), ``None``,
      or any iterable of words (compared after lowercasing, before stemming).
    * ``stemmer``: a Snowball language name for PyStemmer (default ``"english"``),
      or ``None`` for no stemming.

    Cost: O(len(text)) plus one C stemmer call per token (PyStemmer caches stems).
    ``config()`` returns a JSON-able description used by ``InvertedIndex.save``;
    an analyzer with a custom ``tokenizer`` cannot be restored from it.

    >>> Analyzer()("The Running dogs ran; a cat-like x!")
    ['run', 'dog', 'ran', 'cat', 'like']
    """

    __slots__ = (
        "_findall", "_lowercase", "_stem_words", "_stemmer_name", "_stop", "_stopwords_spec",
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
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"tokenizer must be callable, got {type(tokenizer).__name__}")
        if not isinstance(token_pattern, str):
            raise TypeError(f"token_pattern must be a str, got {type(token_pattern).__name__}")
        try:
            compiled = re.compile(token_pattern)
        except re.error as exc:
            raise ValueError(
                f"token_pattern {token_pattern!r} is not a valid regex: {exc}") from None
        if stopwords == "english":
            stop: frozenset[str] = ENGLISH_STOPWORDS
            spec: Any = "english"
        elif stopwords is None:
            stop, spec = frozenset(), None
        elif isinstance(stopwords, str):
            raise ValueError(
                f"stopwords must be 'english', None or a list of words, got {stopwords!r}")
        else:
            words = list(stopwords)
            if not all(isinstance(w, str) for w in words):
                raise TypeError("stopwords must all be str")
            stop = frozenset(w.lower() if lowercase else w for w in words)
            spec = sorted(stop)
        stem_words = None
        if stemmer is not None:
            import Stemmer  # PyStemmer: a declared runtime dependency

            try:
                stem_words = Stemmer.Stemmer(stemmer).stemWords
            except KeyError:
                raise ValueError(
                    f"stemmer {stemmer!r} is not a Snowball language known to PyStemmer; "
                    f"known: {', '.join(Stemmer.algorithms())}"
                ) from None
        self._lowercase = bool(lowercase)
        self._token_pattern = token_pattern
        self._findall = compiled.findall
        self._tokenizer = tokenizer
        self._stop = stop
        self._stopwords_spec = spec
        self._stemmer_name = stemmer
        self._stem_words = stem_words

    def __call__(self, text: str) -> list[str]:
        """Analyse ``text`` into terms: ``normalize(split(text))``. O(len(text))."""
        return self.normalize(self.split(text))

    def split(self, text: str) -> list[str]:
        """Lowercase (if configured) and split into raw tokens. O(len(text))."""
        if self._lowercase:
            text = text.lower()
        if self._tokenizer is None:
            return self._findall(text)
        return list(self._tokenizer(text))

    def normalize(self, tokens: list[str]) -> list[str]:
        """Drop stopwords and stem: each output term depends on one raw token only.

        That is what lets ``InvertedIndex`` cache raw token -> term id for queries.
        """
        stop = self._stop
        if stop:
            tokens = [t for t in tokens if t not in stop]
        if self._stem_words is not None and tokens:
            tokens = self._stem_words(tokens)
        return tokens

    @property
    def custom(self) -> bool:
        """True if a user tokenizer is plugged in (then ``config()`` cannot rebuild it)."""
        return self._tokenizer is not None

    def config(self) -> dict[str, Any]:
        """JSON-able settings; ``Analyzer(**config)`` rebuilds an equal analyzer."""
        return {
            "lowercase": self._lowercase,
            "token_pattern": self._token_pattern,
            "stopwords": self._stopwords_spec,
            "stemmer": self._stemmer_name,
        }

    def __repr__(self) -> str:
        extra = ", tokenizer=<custom>" if self._tokenizer is not None else ""
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if k != "stopwords" or not isinstance(v, list))
        return f"Analyzer({args}{extra})"
