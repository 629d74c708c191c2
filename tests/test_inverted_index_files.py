"""InvertedIndex files: compatibility, hostile files with valid checksums, structure-aware fuzz.

Issue 12: a file is untrusted. Every test here writes files whose checksums are
right (``tests/fuzz_files.py`` recomputes them) and whose content is wrong, and
expects a clean CorruptFileError naming the problem, or a valid index that
passes ``_check()``; never a crash, a hang, or a broken index.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llmds._kernels import bm25_validate as _k
from llmds.analysis import TOKEN_PATTERNS, Analyzer
from llmds.errors import CorruptFileError
from llmds.inverted_index import InvertedIndex
from tests.fuzz_files import Raw, mutate_array, mutate_json, read_raw, run_isolated, write_raw

DATA = Path(__file__).parent / "data"
V1_DOCS = ["The quick brown fox jumps over the lazy dog", "Foxes and dogs are running",
           "Cats sleep all day long", "A dog barks at the mailman", "Running is good exercise",
           "Quick thinking saves the day", "Lazy afternoons with cats and dogs",
           "Brown bears eat fish", "Mailmen deliver letters daily", "Exercise daily, sleep well"]
REDOS = r"(\w+\s?)+$"


def v1_reference() -> InvertedIndex:
    """The index that tests/data/inverted_index_v1.llmds was saved from (by llmds 0.2)."""
    index = InvertedIndex(k1=1.2, b=0.7, seal_postings=8)
    for i, d in enumerate(V1_DOCS):
        index.add_document(100 + i, d)
    index.delete_document(103)
    index.update_document(105, "Quick quick quick thinking")
    return index


def build_rich(seed: int = 0, n: int = 160) -> InvertedIndex:
    """Several segments, tombstones inside segments, tf >= 4, multi-byte gaps, an empty doc."""
    rng = np.random.default_rng(seed)
    common = [f"w{i}" for i in range(12)]
    rare = [f"rare{i}" for i in range(30)]
    index = InvertedIndex(seal_postings=90)
    for i in range(n):
        words = list(rng.choice(common, int(rng.integers(1, 9))))
        if rng.random() < 0.15:
            words += [str(rng.choice(rare))] * int(rng.integers(1, 40))
        index.add_document(i * 1000 - 50_000, " ".join(words))
        if i % 23 == 5:
            index.delete_document((i - 3) * 1000 - 50_000)  # tombstones inside segments
    index.add_document(10**15, "!!! ???")  # a live document without terms
    index.delete_document(159 * 1000 - 50_000)  # deleted while in the buffer
    return index


def build_custom_options() -> InvertedIndex:
    analyzer = Analyzer(lowercase=False, token_pattern=TOKEN_PATTERNS["word1"],
                        stopwords=["the", "of"], stemmer="porter")
    index = InvertedIndex(k1=0.9, b=0.4, analyzer=analyzer, seal_postings=7, merge_factor=3.0)
    for i, text in enumerate(V1_DOCS * 3):
        index.add_document(-(2**63) + i * 2**58, f"{text} n{i % 4}")
    return index


def seeds(folder: Path) -> list[Path]:
    """Saved seed indexes to mutate: rich, custom options, one document, empty."""
    one = InvertedIndex()
    one.add_document(7, "solitary document")
    out = []
    for name, index in (("rich", build_rich()), ("custom", build_custom_options()),
                        ("one", one), ("empty", InvertedIndex())):
        path = folder / f"{name}.llmds"
        index.save(path)
        out.append(path)
    return out


def load_and_search(path: str) -> None:
    """The fuzz target: load (read and mapped), check, search, mutate, check again."""
    for mmap in (False, True):
        index = InvertedIndex.load(path, mmap=mmap)
        index._check()
        terms = [t for t in index._docs.terms[:60] if t.isalnum()]
        queries = [" ".join(terms[i : i + 3]) for i in range(0, len(terms), 3)] + ["zzz"]
        index.search_batch(queries, 7)
        index.search_batch(queries, 2**40, as_arrays=True)
        for q in queries[:8]:
            index.search(q, 3)
            index.search(q, 5, allowed_ids=list(index._docs.ext2int)[:4])
        ids = sorted(index._docs.ext2int)[:3]
        for doc_id in ids:
            for t in terms[:3]:
                index.get_term_frequency(t, doc_id)
        for t in terms[:5]:
            index.get_document_frequency(t)
        index.stats()
        if ids:
            index.delete_document(ids[0])
        fresh = next(d for d in range(12345, 12400) if d not in index)
        index.add_document(fresh, " ".join(terms[:4]) or "new words")
        index.seal()
        index._check()
        index.merge()
        index._check()
        index.search_batch(queries, 5)


# ----------------------------------------------------------------------------- compatibility
def test_reads_llmds_0_2_files():
    """A version-1 file written by llmds 0.2 loads, validated, with its analyzer."""
    loaded = InvertedIndex.load(DATA / "inverted_index_v1.llmds")
    loaded._check()
    ref = v1_reference()
    for q in ["quick dogs", "running exercise", "cats", "letters"]:
        assert loaded.search(q, 5) == ref.search(q, 5)
    assert (loaded.k1, loaded.b, len(loaded)) == (1.2, 0.7, 9)
    assert InvertedIndex.load(DATA / "inverted_index_v1.llmds", mmap=True).search(
        "fox", 3) == ref.search("fox", 3)


@pytest.mark.parametrize("mmap", [False, True])
def test_regex_from_a_file_is_never_compiled(tmp_path, mmap):
    """Issue 12: ``(\\w+\\s?)+$`` read from a file made a 29-character query take 24 s."""
    with pytest.raises(CorruptFileError, match=r"token_pattern .* is not one of the named"):
        InvertedIndex.load(DATA / "inverted_index_v1_redos.llmds", mmap=mmap)
    # the 0.2 file still loads when the caller supplies the analyzer
    index = InvertedIndex.load(DATA / "inverted_index_v1_redos.llmds",
                               analyzer=Analyzer(stopwords=None, stemmer=None))
    assert len(index) == 1
    # a current file naming a regex instead of a pattern name is refused as well
    InvertedIndex().save(tmp_path / "x")
    raw = read_raw(tmp_path / "x")
    raw.header["meta"]["analyzer"]["token_pattern"] = REDOS
    write_raw(tmp_path / "x", raw)
    with pytest.raises(CorruptFileError, match="token_pattern must be one of 'word2'"):
        InvertedIndex.load(tmp_path / "x", mmap=mmap)


def test_analyzer_is_stored_by_name(tmp_path):
    index = build_custom_options()
    index.save(tmp_path / "c")
    meta = read_raw(tmp_path / "c").header["meta"]
    assert meta["analyzer"] == {"name": "llmds.Analyzer", "version": 1, "lowercase": False,
                                "token_pattern": "word1", "stopwords": ["of", "the"],
                                "stemmer": "porter"}
    loaded = InvertedIndex.load(tmp_path / "c")
    assert loaded.search("Dogs running", 5) == index.search("Dogs running", 5)
    # a pattern outside the named set, a tokenizer or a subclass is not stored
    for analyzer in (Analyzer(token_pattern=r"[a-z]+"), Analyzer(tokenizer=str.split),
                     type("Sub", (Analyzer,), {"__slots__": ()})(), str.split):
        custom = InvertedIndex(analyzer=analyzer)
        custom.add_document(1, "abc def")
        custom.save(tmp_path / "u")
        assert read_raw(tmp_path / "u").header["meta"]["analyzer"] is None
        with pytest.raises(CorruptFileError, match="custom analyzer; pass analyzer="):
            InvertedIndex.load(tmp_path / "u")
        assert InvertedIndex.load(tmp_path / "u", analyzer=analyzer).search("abc") == \
            custom.search("abc")


@pytest.mark.parametrize(("key", "value", "match"), [
    ("token_pattern", "word3", "token_pattern must be one of"),
    ("stemmer", "klingon", "stemmer must be null or a PyStemmer language"),
    ("stemmer", 5, "stemmer must be null"),
    ("stopwords", "french", "stopwords must be 'english', null or a list"),
    ("stopwords", [1, 2], "stopwords must be"),
    ("lowercase", 1, "lowercase must be true or false"),
    ("name", "os.system", "this llmds reads 'llmds.Analyzer'"),
    ("version", 2, "version"),
    ("extra", "x", "analyzer spec must have the keys"),
])
def test_unknown_analyzer_options_are_corrupt(tmp_path, key, value, match):
    InvertedIndex().save(tmp_path / "x")
    raw = read_raw(tmp_path / "x")
    raw.header["meta"]["analyzer"][key] = value
    write_raw(tmp_path / "x", raw)
    with pytest.raises(CorruptFileError, match=match):
        InvertedIndex.load(tmp_path / "x")
    # a caller-supplied analyzer does not excuse a corrupt spec in a current file
    with pytest.raises(CorruptFileError, match=match):
        InvertedIndex.load(tmp_path / "x", analyzer=Analyzer())


# ----------------------------------------------------------------------------- not a file
def test_fifo_folder_and_devices_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, match in ((fifo, "not a regular file"), (tmp_path, "is a folder"),
                        ("/dev/zero", "not a regular file"), ("/dev/null", "not a regular")):
        with pytest.raises(CorruptFileError, match=match):
            InvertedIndex.load(path)
    with pytest.raises(FileNotFoundError):
        InvertedIndex.load(tmp_path / "missing")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="bad magic"):
        InvertedIndex.load(tmp_path / "empty")


# ----------------------------------------------------------------------------- saving
def test_save_over_a_file_that_is_mapped(tmp_path):
    path = tmp_path / "ix.llmds"
    index = build_rich()
    index.save(path)
    queries = ["w1 w2", "rare3", "w7 rare9 w0"]
    expected = [index.search(q, 8) for q in queries]
    mapped = InvertedIndex.load(path, mmap=True)
    reader = InvertedIndex.load(path, mmap=True)
    mapped.add_document(777, "w1 w1 w1 rare3")
    mapped.delete_document(-50_000)
    mapped.save(path)  # replaces the file the two mappings still read
    mapped._check()
    reader._check()
    assert [reader.search(q, 8) for q in queries] == expected  # the old inode, intact
    again = InvertedIndex.load(path)
    again._check()
    assert [again.search(q, 8) for q in queries] == [mapped.search(q, 8) for q in queries]
    assert 777 in again and -50_000 not in again
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_failed_save_leaves_index_and_file_untouched(tmp_path):
    index = build_rich()
    index.save(tmp_path / "ix")
    before = (tmp_path / "ix").read_bytes()
    index.add_document(999_999, "w1 w2")
    stats = index.stats()
    with pytest.raises(IsADirectoryError):
        index.save(tmp_path)
    with pytest.raises(FileNotFoundError):
        index.save(tmp_path / "missing" / "ix")
    assert index.stats() == stats and (tmp_path / "ix").read_bytes() == before


# ----------------------------------------------------------------------------- hostile files
def _rewrite(src: Path, dst: Path, edit) -> Path:
    raw = read_raw(src)
    edit(raw)
    write_raw(dst, raw)
    return dst


def _set(name: str, index: int | tuple[int, int], value: int):
    def edit(raw: Raw) -> None:
        raw.arrays[name][index] = value
    return edit


def _meta(key: str, value: object):
    def edit(raw: Raw) -> None:
        raw.header["meta"][key] = value
    return edit


def _first_term_range(raw: Raw) -> tuple[int, int]:
    """Arena [start, end) of the first non-empty posting list of segment 0."""
    ds, dr, nt = (int(x) for x in raw.arrays["segments"][0, :3])
    d = raw.arrays["dir"][dr : dr + nt + 1].astype(np.int64)
    t = int(np.flatnonzero(np.diff(d) > 1)[0])
    return ds + int(d[t]), ds + int(d[t + 1])


def _arena(fn):
    def edit(raw: Raw) -> None:
        lo, hi = _first_term_range(raw)
        fn(raw.arrays["arena"], lo, hi)
    return edit


def _drop_last_doc(raw: Raw) -> None:
    for name in ("live", "doc_len", "ext_ids"):
        raw.arrays[name] = raw.arrays[name][:-1]
    raw.header["meta"]["num_ids"] -= 1


HOSTILE = [
    ("df negative", _set("df", 0, -1), "df of term 0 is -1"),
    ("df too large", _set("df", 3, 10**6), "df of term 3"),
    ("doc_len negative", _set("doc_len", 2, -5), "doc_len holds a negative"),
    ("doc_len wrong", _set("doc_len", 0, 1000), "doc_len differs from the sum"),
    ("live = 2", _set("live", 1, 2), "live must hold only 0 and 1"),
    ("live flipped", _set("live", 0, 0), "df of term|num_live"),
    ("duplicate ext ids", lambda r: r.arrays["ext_ids"].__setitem__(1, r.arrays["ext_ids"][0]),
     "share an external doc id"),
    ("num_live", _meta("num_live", 3), "num_live is 3"),
    ("num_live negative", _meta("num_live", -1), "num_live must be in"),
    ("total_len", _meta("total_len", 12345), "total_len differs"),
    ("num_ids float", _meta("num_ids", 5.0), "num_ids must be an int"),
    ("num_ids huge", _meta("num_ids", 10**12), "num_ids must be in"),
    ("num_terms mismatch", _meta("num_terms", 3), "'df' has .* entries, expected num_terms"),
    ("k1 nan", _meta("k1", float("nan")), "k1 must be a finite number"),
    ("k1 huge", _meta("k1", 1e300), "k1 must be <= 1000"),
    ("k1 string", _meta("k1", "1.2"), "k1 must be a number"),
    ("b out of range", _meta("b", 2), "b must be <= 1"),
    ("seal_postings 0", _meta("seal_postings", 0), "seal_postings must be in"),
    ("seal_postings bool", _meta("seal_postings", True), "seal_postings must be an int"),
    ("merge_factor", _meta("merge_factor", float("inf")), "merge_factor must be a finite"),
    ("missing meta key", lambda r: r.header["meta"].pop("total_len"), "meta must have the keys"),
    ("extra meta key", _meta("exec", "rm -rf /"), "meta must have the keys"),
    ("extra array", lambda r: r.arrays.__setitem__("x", np.zeros(1, np.uint8)),
     "unexpected array"),
    ("dtype changed", lambda r: r.arrays.__setitem__(
        "doc_len", r.arrays["doc_len"].astype(np.int64)), "'doc_len' is int64"),
    ("array missing", lambda r: r.arrays.pop("df"), "'df' is missing"),
    ("shape vs count", _drop_last_doc, "doc ranges|doc_len differs|df of term|num_live"),
    ("segments 6 columns", lambda r: r.arrays.__setitem__("segments", r.arrays["segments"][:, :6]
                                                           .copy()), "7 columns"),
    ("segment past arena", _set("segments", (0, 0), 10**9), "bytes lie outside the arena"),
    ("segment negative", _set("segments", (1, 3), -1), "negative value"),
    ("segment nterms", _set("segments", (0, 2), 10**6), "more terms than the vocabulary"),
    ("segment dir", _set("segments", (1, 1), 10**9), "directory lies outside"),
    ("segments overlap docs", _set("segments", (1, 3), 0), "doc ranges"),
    ("segment doc_end", _set("segments", (0, 4), 10**6), "doc ranges"),
    ("segment num_postings", _set("segments", (0, 6), 3), "num_postings does not match"),
    ("dir not monotone", _set("dir", 3, 4_000_000_000), "directory that does not run"),
    ("dir first not 0", _set("dir", 0, 1), "directory"),
    ("varint runs past", _arena(lambda a, lo, hi: a.__setitem__(hi - 1, 0x80)),
     "varint that runs past"),
    ("varint overlong", _arena(lambda a, lo, hi: a.__setitem__(slice(lo, hi), 0xFF)),
     "varint that runs past|63 bits"),
    ("doc out of range", _arena(lambda a, lo, hi: a.__setitem__(lo, 0x7C)),
     "outside the segment's range|not strictly"),
    ("doc order", _arena(lambda a, lo, hi: a.__setitem__(slice(lo + 1, hi), 1)),
     "not strictly increasing|num_postings|df of term|doc_len"),
    ("vocab not utf-8", lambda r: r.arrays["vocab_blob"].__setitem__(0, 0xFF), "not valid UTF-8"),
    ("vocab duplicate", lambda r: r.arrays["vocab_blob"].__setitem__(
        slice(0, 2), r.arrays["vocab_blob"][2:4]), "twice|UTF-8"),
    ("vocab lens sum", _set("vocab_lens", 0, 1000), "vocab_lens"),
    ("vocab lens negative", _set("vocab_lens", 1, -1), "vocab_lens"),
    ("vocab lens wrap", lambda r: r.arrays["vocab_lens"].__setitem__(
        slice(0, 2), [2**62, 2**62]), "vocab_lens"),
    ("kind", lambda r: r.header.__setitem__("kind", "llmds.HNSW"), "holds 'llmds.HNSW'"),
    ("version", lambda r: r.header.__setitem__("version", 3), "version 3 is not one"),
    ("analyzer not a dict", _meta("analyzer", [1]), "analyzer spec must be an object"),
]


@pytest.mark.parametrize(("label", "edit", "match"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_file_is_refused_with_a_named_reason(tmp_path, label, edit, match):
    src = tmp_path / "rich.llmds"
    build_rich().save(src)
    bad = _rewrite(src, tmp_path / "bad.llmds", edit)
    for mmap in (False, True):
        with pytest.raises(CorruptFileError, match=match):
            InvertedIndex.load(bad, mmap=mmap)


def test_unchanged_rewrite_loads_and_passes_check(tmp_path):
    """The helper itself: a rewrite without changes is a valid file (baseline)."""
    for path in seeds(tmp_path):
        copy = _rewrite(path, tmp_path / "copy.llmds", lambda raw: None)
        load_and_search(str(copy))


def test_coherent_edits_give_valid_indexes(tmp_path):
    """Edits that keep every invariant load (the validation is not merely paranoid)."""
    src = seeds(tmp_path)[0]

    def add_empty_doc(raw: Raw) -> None:
        for name, value in (("live", 1), ("doc_len", 0), ("ext_ids", 424242)):
            raw.arrays[name] = np.append(raw.arrays[name], value).astype(raw.arrays[name].dtype)
        raw.header["meta"]["num_ids"] += 1
        raw.header["meta"]["num_live"] += 1

    def swap_ids(raw: Raw) -> None:
        e = raw.arrays["ext_ids"]
        e[0], e[1] = e[1], e[0]

    for edit in (add_empty_doc, swap_ids, _meta("k1", 0.0), _meta("b", 1.0),
                 _meta("seal_postings", 1), _meta("merge_factor", 1)):
        path = _rewrite(src, tmp_path / "ok.llmds", edit)
        load_and_search(str(path))


# ----------------------------------------------------------------------------- fuzz
_ARRAY_WEIGHTS = {"arena": 5, "dir": 3, "segments": 4, "df": 1, "live": 1, "doc_len": 1,
                  "ext_ids": 1, "vocab_blob": 1, "vocab_lens": 1}


def _mutate(raw: Raw, rng: np.random.Generator) -> list[str]:
    """Apply 1-3 structure-aware mutations to ``raw``; return their descriptions."""
    done = []
    for _ in range(int(rng.integers(1, 4))):
        roll = rng.random()
        if roll < 0.2:
            what, raw.header["meta"] = mutate_json(raw.header["meta"], rng)
            done.append(f"meta {what}")
        elif roll < 0.23:
            key = str(rng.choice(["kind", "version"]))
            what, raw.header[key] = mutate_json(raw.header.get(key), rng)
            done.append(f"header {key} {what}")
        elif roll < 0.4 and raw.arrays["arena"].size and raw.arrays["segments"].shape[0]:
            # inside one posting list: keeps the table valid, breaks the stream
            arena = raw.arrays["arena"]
            lo, hi = _random_term_range(raw, rng)
            i = int(rng.integers(lo, hi))
            kind = int(rng.integers(0, 3))
            if kind == 0:
                arena[i] = int(rng.integers(0, 256))
            elif kind == 1:
                arena[i] ^= 0x80
            else:
                arena[i:hi] = rng.integers(0, 256, hi - i, dtype=np.uint8)
            done.append(f"arena posting bytes from {i} (kind {kind})")
        else:
            names = list(_ARRAY_WEIGHTS)
            weights = np.array([_ARRAY_WEIGHTS[n] for n in names], dtype=float)
            name = str(rng.choice(names, p=weights / weights.sum()))
            what, raw.arrays[name] = mutate_array(raw.arrays[name], rng)
            done.append(f"{name} {what}")
    return done


def _random_term_range(raw: Raw, rng: np.random.Generator) -> tuple[int, int]:
    """Arena range of a random posting list (the whole arena once the table is mangled)."""
    size = raw.arrays["arena"].size
    try:
        segs = raw.arrays["segments"]
        s = int(rng.integers(0, segs.shape[0]))
        ds, dr, nt = (int(x) for x in segs[s, :3])
        d = raw.arrays["dir"][dr : dr + nt + 1].astype(np.int64)
        t = int(rng.choice(np.flatnonzero(np.diff(d) > 0)))
        lo, hi = ds + int(d[t]), ds + int(d[t + 1])
    except (IndexError, ValueError, TypeError, OverflowError):
        return 0, size
    return (lo, hi) if 0 <= lo < hi <= size else (0, size)


FUZZ_FILES = 6000
# numba bounds checking turns any out-of-range read or write of any kernel into an
# IndexError (an "error" outcome) instead of silent garbage or a lucky non-crash; its
# own cache folder keeps the checked machine code apart from the normal one (the
# first run compiles every kernel: ~15 s).
BOUNDSCHECK_ENV = {**os.environ, "NUMBA_BOUNDSCHECK": "1",
                   "NUMBA_CACHE_DIR": str(Path(tempfile.gettempdir())
                                          / f"llmds-numba-boundscheck-{os.getuid()}")}


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "num_files", "env"), [
    (12, FUZZ_FILES, None), (13, 1500, BOUNDSCHECK_ENV)], ids=["fast", "boundscheck"])
def test_fuzz_inverted_index_files(tmp_path, seed, num_files, env):
    """Load + search + _check on mutated files with recomputed checksums, in a subprocess.

    Pass: every file gives a clean CorruptFileError or a valid index; no "error"
    (another exception, a failing _check, an out-of-bounds access under the bounds
    check), no "crash" (signal), no "hang".
    """
    rng = np.random.default_rng(seed)
    bases = [read_raw(p) for p in seeds(tmp_path)]
    paths, notes = [], {}
    for i in range(num_files):
        raw = bases[int(rng.choice(len(bases), p=[0.55, 0.3, 0.1, 0.05]))].clone()
        what = _mutate(raw, rng)
        path = tmp_path / f"f{i:04d}.llmds"
        write_raw(path, raw)
        paths.append(path)
        notes[str(path)] = what
    # keep a few offenders for inspection when this fails
    outcomes = run_isolated("tests.test_inverted_index_files:load_and_search", paths,
                            per_file_timeout=20.0 if env is None else 120.0, env=env)
    counts = Counter(o.kind for o in outcomes)
    bad = [(o.kind, notes[o.path], o.detail[:400]) for o in outcomes
           if o.kind not in ("clean", "valid")]
    print(f"\nInvertedIndex fuzz: files {len(outcomes)}, clean {counts['clean']}, valid "
          f"{counts['valid']}, errors {counts['error']}, crashes {counts['crash']}, "
          f"hangs {counts['hang']}")
    if bad:
        keep = tmp_path.parent / "fuzz_failures"
        keep.mkdir(exist_ok=True)
        for o in outcomes:
            if o.kind not in ("clean", "valid"):
                shutil.copy(o.path, keep / Path(o.path).name)
    assert not bad, bad[:5]
    assert counts["clean"] > num_files // 2 and counts["valid"] > 0


def validate_random_tables(seed: str) -> None:
    """Random arrays straight into the validation kernel (no Python pre-checks).

    Run under NUMBA_BOUNDSCHECK=1: the kernel must answer with a code, never index
    outside its arrays, whatever the table says.
    """
    rng = np.random.default_rng(int(seed))
    codes = Counter()
    for _ in range(4000):
        na = int(rng.integers(0, 40))
        arena = np.where(rng.random(na) < 0.7, rng.integers(0, 128, na),
                         rng.integers(128, 256, na)).astype(np.uint8)
        nd = int(rng.integers(1, 12))
        if rng.random() < 0.7:
            dirs = np.sort(rng.integers(0, na + 3, nd)).astype(np.uint32)
            dirs[0] = 0
        else:
            dirs = rng.integers(0, 2**32, nd, dtype=np.uint64).astype(np.uint32)
        n, v, m = (int(x) for x in rng.integers(0, 10, 3))
        if rng.random() < 0.5 and n:  # a plausible single-segment table
            segs = np.array([[0, 0, min(nd - 1, v), 0, n, int(dirs[min(nd - 1, v)]), 0]])
        else:
            segs = rng.integers(-2, 12, (m, 7))
            segs[rng.random((m, 7)) < 0.05] = 2**62
        live = rng.integers(0, 3, n).astype(np.uint8)
        code, *_ = _k.validate_segments(
            arena, dirs, np.ascontiguousarray(segs, dtype=np.int64), n, v, live,
            np.zeros(v, np.int64), np.zeros(n, np.int64), np.zeros(segs.shape[0], np.int64))
        assert 0 <= code <= 6, code
        codes[code] += 1
    assert len(codes) >= 5, codes  # the generator reaches most verdicts


@pytest.mark.slow
def test_validation_kernel_never_reads_outside_its_arrays():
    outcomes = run_isolated("tests.test_inverted_index_files:validate_random_tables",
                            ["1", "2", "3"], per_file_timeout=120.0, env=BOUNDSCHECK_ENV)
    assert [o.kind for o in outcomes] == ["valid"] * 3, [o.detail for o in outcomes]


def _probe_target(path: str) -> None:
    """For the helper's own test: behave as the file name says."""
    name = Path(path).name
    if name == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif name == "hang":
        time.sleep(120)
    elif name == "error":
        raise AssertionError("_check failed")
    elif name == "clean":
        raise CorruptFileError("bad file")


@pytest.mark.slow
def test_run_isolated_survives_crashes_and_hangs(tmp_path):
    names = ["ok", "clean", "crash", "ok", "hang", "error", "ok"]
    outcomes = run_isolated("tests.test_inverted_index_files:_probe_target",
                            [tmp_path / n for n in names], per_file_timeout=3.0)
    assert [o.kind for o in outcomes] == ["valid", "clean", "crash", "valid", "hang", "error",
                                          "valid"]
    assert "SIG" in outcomes[2].detail or "-11" in outcomes[2].detail
    assert "AssertionError: _check failed" in outcomes[5].detail
