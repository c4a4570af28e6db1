"""The torch-free tokenizer gives open_clip's token ids, text for text, on thousands of texts."""

from __future__ import annotations

import random

import numpy as np
import open_clip
import pytest

from search.encoding.tokenizer import ClipTokenizer, matches_open_clip

EDGE_CASES = [
    "", " ", "a dog", "Kids Building a SANDCASTLE at dusk!!", "l'été à Paris, café's naïve",
    "über straße", "日本語のテキスト", "emoji 🐶🏖️ family 👨‍👩‍👧", "don't it's we've I'LL they'd",
    "&amp;lt;b&amp;gt; &quot;html&quot; &#39;", "  spaces\t\nnewline\r\n  ", "12345 3.14 1,000",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ", "ﬁ ﬂ ligatures", "\u0000\u200b\x1b[31mred\x1b[0m",
    "mojibake Ã©tÃ©",
    "x<start_of_text>y", "!<end_of_text>", "<START_OF_TEXT>", "<end_of_text><end_of_text>",
    "a" * 300, "sandcastle " * 40, "photo_of_a-cat.jpg", "#hashtag @user http://x.y/z?q=1",
    "Ελληνικά κείμενο", "русский текст", "العربية", "हिन्दी", "한국어 텍스트", "¿qué? ¡sí!",
]
ALPHABET = ("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ 0123456789 '.,!?;:-_<>&#/\\\"()"
            "\t\néèüßçñø日本語한😀🐶\u200b\u00a0ﬁＡ")


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = [rng.choice(["dog", "sandcastle", "it's", "&amp;", "<end_of_text>", "ﬁsh"])
                 if rng.random() < 0.2 else
                 "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12)))
                 for _ in range(rng.randint(0, 30))]
        texts.append(rng.choice([" ", "", "  ", "\t"]).join(words))
    return texts


@pytest.fixture(scope="module")
def reference():  # noqa: ANN201
    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def ours() -> ClipTokenizer:
    return ClipTokenizer(77)


def test_token_ids_equal_open_clips_on_thousands_of_texts(reference, ours) -> None:
    texts = EDGE_CASES + random_texts(3000)
    differ = [t for t in texts if ours.encode(t) != reference.encode(t)]
    assert differ == []


def test_rows_are_open_clips_rows_cut_after_the_last_end_token(reference, ours) -> None:
    texts = ["a dog", "", "word " * 100, "kids building a sandcastle at dusk"]
    expected = reference(texts).numpy()
    got = ours(texts)
    length = int(expected.argmax(axis=1).max()) + 1  # 77: the long text is truncated
    assert got.dtype == np.int64 and got.shape == (4, length)
    assert np.array_equal(got, expected[:, :length])
    assert got[2, -1] == ours.eot  # a truncated text still ends with the end token
    short = ours(["a dog", "a cat"])
    assert np.array_equal(short, reference(["a dog", "a cat"]).numpy()[:, :4])


def test_only_open_clips_default_clip_tokenizer_counts_as_reproduced(reference) -> None:
    assert matches_open_clip(reference)
    assert not matches_open_clip(open_clip.tokenizer.SimpleTokenizer(clean="whitespace"))
    assert not matches_open_clip(
        open_clip.tokenizer.SimpleTokenizer(additional_special_tokens=["<mask>"]))
    assert not matches_open_clip(object())
