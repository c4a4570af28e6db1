"""A folder that indexes itself: after the normal run, watch the folders and run again.

File-system events come through watchdog (inotify on Linux, FSEvents, kqueue,
ReadDirectoryChangesW); a burst of them (a camera card copied in) is gathered
until the folders are quiet for SETTLE_S, or for at most MAX_WAIT_S, and then
becomes one incremental run, committed in batches like any other. Where events
are not delivered (network shares, a folder that was absent when watching
began) a full rescan every RESCAN_S catches up. The caller holds the write lock
throughout, so runs are the same writer's, one after another.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

SETTLE_S = 1.0  # quiet this long after the last event before a run starts
MAX_WAIT_S = 10.0  # a run starts at the latest this long after the first event of a burst
RESCAN_S = 300.0  # a full rescan this often, for folders whose events never arrive
# Reading a photo is an event too (inotify's open and close): runs would wake themselves.
_IGNORED = {"opened", "closed_no_write"}


class Changes:
    """Watchdog's handler: notes when the first and the latest relevant event came."""

    def __init__(self, ignore: Sequence[str]) -> None:
        self._ignore = tuple(os.path.join(os.path.realpath(p), "") for p in ignore)
        self._lock = threading.Lock()
        self._woken = threading.Event()
        self.first: float | None = None
        self.last = 0.0

    def dispatch(self, event: object) -> None:
        if getattr(event, "event_type", "") in _IGNORED:
            return
        paths = [getattr(event, "src_path", ""), getattr(event, "dest_path", "")]
        if all(not p or os.path.join(os.path.realpath(str(p)), "").startswith(self._ignore)
               for p in paths):
            return  # the index folder's own files (it may sit inside a watched folder)
        with self._lock:
            now = time.monotonic()
            self.first = self.first or now
            self.last = now
        self._woken.set()

    def wait(self, stop: threading.Event, rescan_s: float) -> bool:
        """Block until a burst has settled (True) or a rescan is due (True), or `stop` is
        set (False)."""
        deadline = time.monotonic() + rescan_s
        while not stop.is_set():
            with self._lock:
                first, last = self.first, self.last
            now = time.monotonic()
            if first is not None and (now - last >= SETTLE_S or now - first >= MAX_WAIT_S):
                with self._lock:
                    self.first = None
                    self._woken.clear()
                return True
            if now >= deadline:
                return True
            self._woken.wait(0.1 if first is not None else min(1.0, deadline - now))
        return False


def watch(roots: Sequence[str], first: Callable[[], None], run: Callable[[], None],
          stop: threading.Event, ignore: Sequence[str] = (), rescan_s: float = RESCAN_S) -> None:
    """Call `first` once events are watched for (so changes during it are not missed),
    then `run` after every settled burst of changes under `roots` (and every `rescan_s`)
    until `stop` is set or Ctrl-C while idle; a folder that cannot be watched now is
    caught by the rescans. Ctrl-C during a run is that run's (it raises)."""
    from watchdog.observers import Observer

    changes = Changes(ignore)
    observer = Observer()
    for root in roots:
        try:
            observer.schedule(changes, root, recursive=True)  # type: ignore[arg-type]
        except OSError as exc:
            log.warning("cannot watch %s (%s); rescanning it every %.0f s instead", root,
                        exc.strerror or exc, rescan_s)
    observer.start()
    try:
        first()
        while _idle(changes, stop, rescan_s):
            run()
    finally:
        observer.stop()
        observer.join(5)


def _idle(changes: Changes, stop: threading.Event, rescan_s: float) -> bool:
    """Wait for the next run (True); False once `stop` is set or Ctrl-C comes meanwhile (a
    person's stop: nothing is half done)."""
    try:
        return changes.wait(stop, rescan_s)
    except KeyboardInterrupt:
        return False
