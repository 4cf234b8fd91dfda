"""Near-duplicate detection by MinHash over word shingles: clusters of texts that say the
same thing, so a train/test split never puts one copy on each side.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")
_P = (1 << 61) - 1  # a Mersenne prime for the MinHash permutations
_FUNCTION_WORDS = frozenset(
    "a an the and or of to in on for with how can i you me my is are be that this it by "
    "from as at into about what who which please write create provide give develop explain "
    "describe".split())


def shingles(text: str, k: int) -> np.ndarray:
    """Hashes of the word k-grams of `text` (k = 1: its content words)."""
    words = _WORD.findall(text.lower())
    if k == 1:
        words = [w for w in words if w not in _FUNCTION_WORDS] or words
        grams = set(words)
    else:
        grams = {" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}
    # crc32: stable across processes, unlike the salted built-in hash.
    return np.array(sorted(zlib.crc32(g.encode("utf-8")) for g in grams if g),
                    dtype=np.uint64)


def minhash(texts: Sequence[str], k: int, n_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signatures (len(texts) x n_perm): the share of equal columns of two rows
    estimates the Jaccard similarity of their shingle sets."""
    rng = np.random.default_rng(seed)
    # a < 2**31 and crc32 hashes < 2**32, so a * h + b stays below 2**64: no wrap-around.
    a = rng.integers(1, 1 << 31, n_perm, dtype=np.uint64)
    b = rng.integers(0, _P, n_perm, dtype=np.uint64)
    sig = np.full((len(texts), n_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i, t in enumerate(texts):
        h = shingles(t, k)
        if len(h):
            v = (a[:, None] * h[None, :] + b[:, None]) % np.uint64(_P)
            sig[i] = v.min(axis=1)
    return sig


def clusters(texts: Sequence[str], k: int, threshold: float = 0.5) -> list[int]:
    """A cluster id per text: texts whose estimated Jaccard similarity is >= `threshold`
    are joined (transitively, with union-find)."""
    sig = minhash(texts, k)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(len(texts) - 1):
        sim = (sig[i + 1:] == sig[i]).mean(axis=1)
        for j in np.nonzero(sim >= threshold)[0]:
            ri, rj = find(i), find(i + 1 + int(j))
            if ri != rj:
                parent[rj] = ri
    return [find(i) for i in range(len(texts))]


def max_similarity(texts: Sequence[str], others: Sequence[str], k: int = 1) -> np.ndarray:
    """For each text, its highest estimated Jaccard similarity to any of `others`."""
    if not others or not texts:
        return np.zeros(len(texts))
    sig = minhash(list(texts) + list(others), k)
    a, b = sig[:len(texts)], sig[len(texts):]
    return np.array([(b == row).mean(axis=1).max() for row in a])
