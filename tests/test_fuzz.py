"""Fuzzing: random file changes, index runs and crashes, checked against a model of the folder.

A Hypothesis state machine creates, rewrites, renames, moves, copies, touches and
deletes photos (and a few unreadable files) under one root, and runs `index` on it,
sometimes crashing the run at a random point: before, inside or after one of its
catalog transactions, or while it saves the FAISS file. A crash is an exception
(finally blocks still run), Ctrl-C, or a kill (nothing is written after it). The
Library is then dropped and a new one opened, as a new process would.

After every finished run the index must agree with the folder: the indexed paths
are the readable photos, the unreadable files are listed as skipped with a reason,
every vector is open_clip's for the file's current content, the saved FAISS file
holds exactly the catalog's ids, every photo finds itself first, and a second run
has nothing to do. After a crash, queries must already see exactly the catalog.

CLIPSEARCH_FUZZ_EXAMPLES=500 runs more examples than the default (a longer hunt).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from crashpoints import Crash, Crasher, Untraced, crashing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from indexcheck import assert_faiss_matches_catalog
from tiny import make_photo

from indexes.atomic import TEMP_PREFIX
from indexes.catalog import Catalog
from indexes.vectors import VectorSettings
from search import IngestSettings, Library
from search.errors import FolderNotFound, Interrupted, NoImagesFound

FOLDERS = ("", "a", "a/b")  # under the root; a move may cross them
STEMS = ("p", "q")
EXTENSIONS = (".png", ".jpg")
BAD_KINDS = ("random bytes", "empty", "truncated")
SECOND = 10**9


def _path(folder: str, stem: str, ext: str) -> str:
    return f"{folder}/{stem}{ext}".lstrip("/")


PATHS = sorted(_path(f, s, e) for f in FOLDERS for s in STEMS for e in EXTENSIONS)


class Machine(RuleBasedStateMachine):
    # Set by the test: session-scoped fixtures, one tiny model for every example.
    spec = encoder = reference = base = None

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(os.path.realpath(tempfile.mkdtemp(dir=self.base)))
        self.root = self.tmp / "photos"
        self.root.mkdir()
        self.index_dir = self.tmp / "index"
        self.files: dict[str, bool] = {}  # relative path -> readable photo (else a bad file)
        self.serial = 0  # distinct photo seeds and bad bytes
        self.clock = 1_600_000_000 * SECOND  # distinct mtimes: a rewrite is always seen
        self.kind = "flat"
        self.loads = 0
        self.lib: Library | None = None

    def teardown(self) -> None:
        if self.lib is not None:
            self.lib.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------
    def _open(self) -> Library:
        def load(spec, precision):
            self.loads += 1
            return self.encoder

        return Library.open(str(self.index_dir), self.spec, create=True, load=load)

    def _library(self) -> Library:
        if self.lib is None:
            self.lib = self._open()
        return self.lib

    def _pick(self, pick: int) -> str:
        names = sorted(self.files)
        return names[pick % len(names)]

    def _write_photo(self, rel: str) -> None:
        self.serial += 1
        make_photo(self.root / rel, seed=1000 + self.serial)  # PNG or JPEG by its name
        self._stamp(rel)
        self.files[rel] = True

    def _stamp(self, rel: str) -> None:
        self.clock += SECOND
        os.utime(self.root / rel, ns=(self.clock, self.clock))

    def _index(self, lib: Library, batch: int, workers: int, every_root: bool = False):
        """`clipsearch index ROOT`, or with no folder (refresh every recorded root)."""
        return lib.index([] if every_root else [str(self.root)],
                         settings=IngestSettings(batch_size=batch, workers=workers),
                         vectors=VectorSettings(self.kind))

    # -- the folder -------------------------------------------------------------
    @initialize(kind=st.sampled_from(["flat", "flat", "hnsw"]),
                photos=st.sets(st.sampled_from(PATHS), max_size=5))
    def start(self, kind: str, photos: set[str]) -> None:
        self.kind = kind  # hnsw cannot remove ids: retired ones stay inside, counted stale
        for rel in sorted(photos):
            self._write_photo(rel)

    @rule(kind=st.sampled_from(["flat", "hnsw"]))
    def change_index_kind(self, kind: str) -> None:
        self.kind = kind  # recorded by the next run, which rebuilds the file

    @rule(folder=st.sampled_from(FOLDERS), stem=st.sampled_from(STEMS),
          ext=st.sampled_from(EXTENSIONS))
    def write_photo(self, folder: str, stem: str, ext: str) -> None:
        """A new photo, or new content for an existing name."""
        self._write_photo(_path(folder, stem, ext))

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 99))
    def rewrite(self, pick: int) -> None:
        self._write_photo(self._pick(pick))

    @rule(folder=st.sampled_from(FOLDERS), stem=st.sampled_from(STEMS),
          ext=st.sampled_from(EXTENSIONS), kind=st.sampled_from(BAD_KINDS))
    def write_bad_file(self, folder: str, stem: str, ext: str, kind: str) -> None:
        rel = _path(folder, stem, ext)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.serial += 1
        if kind == "random bytes":
            data = np.random.default_rng(self.serial).bytes(300)
        elif kind == "empty":
            data = b""  # every empty file has the same fingerprint
        else:
            make_photo(path, seed=1000 + self.serial)
            data = path.read_bytes()
            data = data[: len(data) // 2]
        path.write_bytes(data)
        self._stamp(rel)
        self.files[rel] = False

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 99), folder=st.sampled_from(FOLDERS),
          stem=st.sampled_from(STEMS), ext=st.sampled_from((None, *EXTENSIONS)))
    def move(self, pick: int, folder: str, stem: str, ext: str | None) -> None:
        """Rename or move (over an existing file too); the content and mtime go with it."""
        source = self._pick(pick)
        target = _path(folder, stem, ext or Path(source).suffix)
        if target == source:
            return
        (self.root / target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / source, self.root / target)
        self.files[target] = self.files.pop(source)

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 99), folder=st.sampled_from(FOLDERS),
          stem=st.sampled_from(STEMS), keep_mtime=st.booleans())
    def copy(self, pick: int, folder: str, stem: str, keep_mtime: bool) -> None:
        source = self._pick(pick)
        target = _path(folder, stem, Path(source).suffix)
        if target == source:
            return
        (self.root / target).parent.mkdir(parents=True, exist_ok=True)
        if keep_mtime:
            shutil.copy2(self.root / source, self.root / target)  # same size and mtime
        else:
            shutil.copyfile(self.root / source, self.root / target)
            self._stamp(target)
        self.files[target] = self.files[source]

    @precondition(lambda self: len(self.files) >= 2)
    @rule(source=st.integers(0, 99), dest=st.integers(0, 99), how=st.sampled_from(
        ["move", "copy", "copy keeping mtime", "swap"]))
    def onto_existing(self, source: int, dest: int, how: str) -> None:
        """Replace one file with another's content: `mv a b`, `cp a b`, or swap the two."""
        a, b = self._pick(source), self._pick(dest)
        if a == b:
            return
        if how == "move":
            os.replace(self.root / a, self.root / b)
            self.files[b] = self.files.pop(a)
        elif how == "swap":
            os.replace(self.root / a, self.tmp / "swap")
            os.replace(self.root / b, self.root / a)
            os.replace(self.tmp / "swap", self.root / b)
            self.files[a], self.files[b] = self.files[b], self.files[a]
        else:
            shutil.copyfile(self.root / a, self.root / b)
            if how == "copy keeping mtime":
                shutil.copystat(self.root / a, self.root / b)
            else:
                self._stamp(b)
            self.files[b] = self.files[a]

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 99))
    def touch(self, pick: int) -> None:
        self._stamp(self._pick(pick))

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 99))
    def delete(self, pick: int) -> None:
        rel = self._pick(pick)
        (self.root / rel).unlink()
        del self.files[rel]

    @rule(folder=st.sampled_from(FOLDERS[1:]))
    def delete_folder(self, folder: str) -> None:
        shutil.rmtree(self.root / folder, ignore_errors=True)
        for rel in [r for r in self.files if r.startswith(folder + "/")]:
            del self.files[rel]

    @rule(source=st.sampled_from(FOLDERS[1:]), dest=st.sampled_from(["c", "a/d"]))
    def rename_folder(self, source: str, dest: str) -> None:
        if not (self.root / source).is_dir() or (self.root / dest).exists() or (
                dest + "/").startswith(source + "/"):
            return
        (self.root / dest).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.root / source, self.root / dest)
        for rel in [r for r in self.files if r.startswith(source + "/")]:
            self.files[dest + rel[len(source):]] = self.files.pop(rel)

    # -- the index --------------------------------------------------------------
    @rule()
    def reopen(self) -> None:
        """A new process: queries and runs start from what is on disk."""
        if self.lib is not None:
            self.lib.close()
            self.lib = None

    @rule(batch=st.sampled_from([1, 2, 32]), workers=st.sampled_from([1, 2]),
          every_root=st.booleans())
    def index(self, batch: int, workers: int, every_root: bool) -> None:
        lib = self._library()
        if every_root and not lib.info().roots:  # the first run crashed before recording it
            with pytest.raises(FolderNotFound):
                self._index(lib, batch, workers, every_root)
            return
        if not every_root and not self.files:
            with pytest.raises(NoImagesFound):  # refused before anything is pruned
                self._index(lib, batch, workers)
            return
        self._index(lib, batch, workers, every_root)  # an emptied root is pruned
        self.check_finished_run(batch)

    @rule(batch=st.sampled_from([1, 2]), workers=st.sampled_from([1, 2]),
          at=st.integers(0, 16), how=st.sampled_from(["error", "ctrl-c", "kill"]))
    def crashing_index(self, batch: int, workers: int, at: int, how: str) -> None:
        if not self.files:
            return
        lib = self._library()
        crasher = Crasher(at, how)
        try:
            with crashing(lib, crasher):
                self._index(lib, batch, workers)
        except (Crash, Interrupted, KeyboardInterrupt):
            assert crasher.fired
        if not crasher.fired:  # the run ended before the chosen checkpoint
            self.check_finished_run(batch)
            return
        lib.close()  # the process is gone
        self.lib = None
        with contextlib.closing(self._open()) as fresh:
            self.check_queries(fresh)

    # -- invariants -------------------------------------------------------------
    def check_finished_run(self, batch: int) -> None:
        lib = self._library()
        photos = sorted(str(self.root / rel) for rel, ok in self.files.items() if ok)
        bad = sorted(str(self.root / rel) for rel, ok in self.files.items() if not ok)
        catalog = Catalog.open(str(self.index_dir))
        try:
            rows = catalog.files_under(str(self.root))
            assert len(rows) == catalog.counts()["files"]  # nothing outside the root
            assert sorted(p for p, r in rows.items() if r.has_vector) == photos
            assert sorted(p for p, r in rows.items() if not r.has_vector) == bad
            dim = catalog.get_meta("dim")
            vectors = {p: catalog.vector(rows[p].id) for p in photos}
        finally:
            catalog.close()
        info = lib.info()
        assert (info.vectors, info.skipped) == (len(photos), len(bad))
        assert [p for p, _ in info.skipped_files] == bad  # what `info --errors` lists
        assert all(reason for _, reason in info.skipped_files)
        assert not list(self.index_dir.glob(TEMP_PREFIX + "*"))  # a killed save's, cleared
        if photos:
            assert dim is not None
            assert_faiss_matches_catalog(self.index_dir, self.kind)
            expected = self.reference_vectors(photos)
            for path in photos:  # no stale vector for rewritten content
                assert float(vectors[path] @ expected[path]) >= 0.999, path
        self.check_queries(lib)
        # Everything is settled: a new process finds nothing to do and loads no model.
        loads = self.loads
        with contextlib.closing(self._open()) as fresh:
            report = self._index(fresh, batch, 1, every_root=True)
        assert report.nothing_to_do and report.encoded == 0, report
        assert self.loads == loads

    def check_queries(self, lib: Library) -> None:
        """Queries see exactly the catalog's vectors, and each photo finds itself first."""
        catalog = Catalog.open(str(self.index_dir))
        try:
            dim = catalog.get_meta("dim")
            ids = {int(i) for chunk, _ in catalog.iter_vectors(int(dim)) for i in chunk} \
                if dim else set()
        finally:
            catalog.close()
        for file_id in sorted(ids):
            hits = lib.similar(file_id, k=len(ids))
            assert {h.id for h in hits} == ids
            top = hits[0].score
            assert abs(top - 1.0) < 1e-4
            # Copies hold the same vector: any of the tied hits may come first.
            assert file_id in {h.id for h in hits if h.score >= top - 1e-6}

    def reference_vectors(self, paths: list[str]) -> dict[str, np.ndarray]:
        """open_clip's own vector of each file's current content (cached by content)."""
        cache = Machine._reference_cache
        digests = {p: hashlib.blake2b(Path(p).read_bytes(), digest_size=16).hexdigest()
                   for p in paths}
        todo = sorted({d: p for p, d in digests.items() if d not in cache}.items())
        if todo:
            for (digest, _), vector in zip(
                    todo, self.reference.images([Path(p) for _, p in todo]), strict=True):
                cache[digest] = vector
        return {p: cache[d] for p, d in digests.items()}

    _reference_cache: dict[str, np.ndarray] = {}


def test_index_runs_crashes_and_file_changes_keep_the_index_true(
    tmp_path, tiny_spec, tiny_encoder, reference
) -> None:
    Machine.spec, Machine.reference = tiny_spec, reference
    Machine.encoder = Untraced(tiny_encoder)
    Machine.base = str(tmp_path)
    examples = int(os.environ.get("CLIPSEARCH_FUZZ_EXAMPLES", "40"))
    run_state_machine_as_test(Machine, settings=settings(
        max_examples=examples, stateful_step_count=30, deadline=None,
        database=None,  # nothing written into the checkout; a failure prints its steps
        report_multiple_bugs=False,  # shrink one failure, not several (each step is slow)
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
