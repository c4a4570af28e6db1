"""The text corpus `describe` ranks: texts (captions, tags, labels) read from files, encoded
and kept in the catalog."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

from indexes.catalog import Catalog
from indexes.lock import writer_lock
from search.encoding.session import ModelSession
from search.errors import InputFileError


def read_texts(path: str) -> list[str]:
    """Texts from `.txt` (one per line), `.csv`/`.tsv` or `.jsonl` (a `text` field).

    Blank texts are dropped and duplicates kept once, in first-seen order.
    """
    suffix = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if suffix in (".csv", ".tsv"):
                raw = _from_csv(path, f, "\t" if suffix == ".tsv" else ",")
            elif suffix in (".jsonl", ".ndjson"):
                raw = _from_jsonl(path, f)
            else:
                raw = f.read().splitlines()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder; give a .txt, .csv or .jsonl file") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from None
    texts = list(dict.fromkeys(t.strip() for t in raw if t and t.strip()))
    if not texts:
        raise InputFileError(f"{path}: no texts found (one text per line, or a 'text' column)")
    return texts


def add_texts(index_dir: str, catalog: Catalog, session: ModelSession,
              texts: Sequence[str]) -> int:
    """Encode and store texts not already in the corpus; returns how many were new."""
    with writer_lock(index_dir):
        fresh = [t for t in dict.fromkeys(texts) if t not in catalog.texts.existing([t])]
        if not fresh:
            return 0
        encoder = session.encoder()
        vectors = encoder.encode_texts(fresh)
        with catalog.transaction():
            if catalog.get_meta("model") is None:
                catalog.record_model(session.identity_meta(), encoder.dim)
            return catalog.texts.add(fresh, vectors)


def remove_texts(index_dir: str, catalog: Catalog, texts: Sequence[str] | None) -> int:
    """Remove the given texts, or all of them with `None`; returns how many went."""
    with writer_lock(index_dir), catalog.transaction():
        return catalog.texts.clear() if texts is None else catalog.texts.remove(texts)


def _from_csv(path: str, f: object, delimiter: str) -> list[str]:
    reader = csv.DictReader(f, delimiter=delimiter)  # type: ignore[arg-type]
    if not reader.fieldnames or "text" not in reader.fieldnames:
        raise InputFileError(f"{path}: no 'text' column in the header "
                             f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
    return [row["text"] or "" for row in reader]


def _from_jsonl(path: str, f: object) -> list[str]:
    texts = []
    for number, line in enumerate(f, 1):  # type: ignore[call-overload]
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputFileError(f"{path}:{number}: expected an object with a string 'text' field")
        texts.append(record["text"])
    return texts
