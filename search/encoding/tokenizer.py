"""open_clip's CLIP tokenizer without torch: its vocabulary, its text cleaning, and the
`tokenizers` library's byte-level BPE.

open_clip's `SimpleTokenizer` module imports torch (~2.5 s), which a cold text
query cannot afford. This gives the same token ids for the models whose
tokenizer is that class with its defaults (the BPE vocabulary shipped with
open_clip, `clean="lower"`, the two special tokens, plain truncation): the
clean-up and the word split follow open_clip (ftfy, HTML unescaping, its
regular expression); the byte-level BPE merges run in `tokenizers`.
`tests/test_tokenizer.py` compares the two token for token on thousands of texts,
and the text tower's export checks them again on its probes.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # open_clip reads this many merge lines after the header
SPECIALS = ("<start_of_text>", "<end_of_text>")
WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def vocabulary_path() -> str:
    """The BPE vocabulary inside the installed open_clip (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open_clip is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], VOCAB_FILE)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE, in the order that gives ids 0-255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


class ClipTokenizer:
    """Texts -> int64 token rows: start token, BPE ids, end token, cut to `context_length`."""

    def __init__(self, context_length: int = 77, vocabulary: str | None = None) -> None:
        import regex
        from tokenizers import Tokenizer, models, pre_tokenizers

        with gzip.open(vocabulary or vocabulary_path()) as f:
            lines = f.read().decode("utf-8").split("\n")[1:MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        symbols = _byte_symbols()
        vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges),
                 *SPECIALS]
        self.ids = {token: i for i, token in enumerate(vocab)}
        bpe = Tokenizer(models.BPE(self.ids, merges, end_of_word_suffix="</w>"))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        self._bpe = bpe
        self._words = regex.compile("|".join([*SPECIALS, WORDS]), regex.IGNORECASE)
        self.context_length = context_length
        self.sot, self.eot = (self.ids[s] for s in SPECIALS)
        _clean("warm-up")  # ftfy's import and first call (~0.13 s) here: a loading thread's

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without the start and end tokens (open_clip's `encode`)."""
        ids: list[int] = []
        words: list[str] = []
        for word in self._words.findall(_clean(text)):
            if word in SPECIALS:  # open_clip maps a literal special token to its id
                ids.extend(self._merge(words))
                ids.append(self.ids[word])
                words = []
            else:
                words.append(word)
        ids.extend(self._merge(words))
        return ids

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Token rows, cut after the longest text's end token (the rest is padding)."""
        rows = []
        for text in texts:
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = [*ids[:self.context_length - 1], self.eot]
            rows.append(ids)
        out = np.zeros((len(rows), max((len(r) for r in rows), default=0)), np.int64)
        for i, ids in enumerate(rows):
            out[i, :len(ids)] = ids
        return out

    def _merge(self, words: list[str]) -> list[int]:
        if not words:
            return []
        return list(self._bpe.encode(words, is_pretokenized=True, add_special_tokens=False).ids)


def _clean(text: str) -> str:
    """open_clip's `clean="lower"`: ftfy, HTML unescaped twice, whitespace joined, lowercase."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


def matches_open_clip(tokenizer: Any) -> bool:
    """Whether open_clip's `tokenizer` is the one `ClipTokenizer` reproduces."""
    if type(tokenizer).__name__ != "SimpleTokenizer" or tokenizer.reduction_fn is not None:
        return False
    clean = getattr(tokenizer.clean_fn, "__name__", "")
    ours = ClipTokenizer(int(tokenizer.context_length))
    return clean == "_clean_lower" and tokenizer.encoder == ours.ids
