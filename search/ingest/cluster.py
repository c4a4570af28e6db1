"""Decode and encode on Ray: the driver plans, fingerprints and commits; actors encode shards.

`clipsearch index --ray auto|ADDRESS|local[:WORKERS]` (the `cluster` extra). The
driver does everything a one-machine run does (scan, plan, fingerprints, the
JPEG-shortcut check and the engine choice on its first batch, every catalog
and FAISS write); only the decode+encode of the other photos goes to Ray
actors, which load the model once each (same model, precision and engine as
the driver, so vectors never mix; an actor on a GPU uses torch there) and
read the photos at the same paths (a shared filesystem on a cluster).

Ray Core actors, not Ray Data's actor pool: in a check here Ray Data 2.60
stalled for good after one pool actor was SIGKILLed (ray issue 53727). Here
every shard has a deadline and a bounded number of attempts; a shard whose
actor dies or overruns is given to a fresh actor, and a shard that fails on
MAX_ATTEMPTS actors stops the run (what was committed stays; rerun to resume).
Nothing of Ray is imported unless --ray is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import statistics
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from search.errors import QueryError
from search.ingest.actor import ActorSetup, ShardEncoder

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # actors a shard may fail on before the run stops
FIRST_DEADLINE_S = 600.0  # a shard's time limit until shards have been timed (model loads)
DEADLINE_FACTOR = 10.0  # then: this many times the median shard time, at least MIN_DEADLINE_S
MIN_DEADLINE_S = 60.0
IN_FLIGHT = 2  # shards queued per actor, so it never waits on the driver
CPUS_PER_ACTOR = 4  # on a cluster without GPUs: one actor per this many CPUs
BUILD_DEADLINE_S = 6 * 3600.0  # the sharded index build's adds, all shards together
RAY_MIN_SECONDS = 20.0  # Ray pays for its start-up on work longer than this (`ray_pays`)


class ClusterError(QueryError):
    """Ray could not be reached, or a shard failed on every attempt."""


@dataclass(frozen=True)
class RayTarget:
    """Where to run: `auto` (a running cluster), an address, or `local[:WORKERS]`."""

    address: str | None  # None: start Ray on this machine
    workers: int | None  # local: the number of actors (default: the cores)

    @classmethod
    def parse(cls, value: str) -> RayTarget:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ClusterError("--ray needs Ray, which is not installed: "
                               "pip install 'clipsearch[cluster]'")
        match = re.fullmatch(r"local(?::(\d+))?", value)
        if match:
            workers = int(match.group(1)) if match.group(1) else None
            if workers == 0:
                raise ClusterError("--ray local:WORKERS needs at least 1 worker")
            return cls(None, workers)
        if not value.strip():
            raise ClusterError("--ray must be auto, a cluster ADDRESS, or local[:WORKERS]")
        return cls(value, None)


class RaySession:
    """Ray for one run: started for `local[:WORKERS]` (127.0.0.1, no dashboard) or joined
    at an address on first use (`ensure`), and left at the end; a Ray already running in
    this process is used as is."""

    def __init__(self, target: RayTarget) -> None:
        self.target = target
        self._started = False

    def ensure(self) -> None:
        import ray

        if ray.is_initialized():
            return
        # Ray announces, on stdout, that a local Ray uses its default token authentication:
        # not a concern of this run's output (which may be JSON).
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR)
        try:
            if self.target.address is None:
                ray.init(num_cpus=self.target.workers or os.cpu_count() or 1,
                         include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.target.address, log_to_driver=False,
                         configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - ray raises many kinds; one clear line
            raise ClusterError(f"--ray: cannot start or reach Ray ({exc})") from exc
        self._started = True

    def map(self, function: Any, arguments: Sequence[tuple]) -> list[Any]:
        """`ray_map` on this session (the index build's ShardMap)."""
        self.ensure()
        return ray_map(function, arguments)

    def pool(self, setup: ActorSetup) -> RayPool:
        self.ensure()
        return RayPool(self.target, setup)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()  # stops a local Ray; only disconnects from a cluster


@contextlib.contextmanager
def ray_session(target: RayTarget) -> Iterator[RaySession]:
    session = RaySession(target)
    try:
        yield session
    finally:
        session.close()


def ray_pays(seconds_here: float, photos: int) -> bool:
    """Whether to hand `photos` to Ray, which would take `seconds_here` in this process.
    Ray's fixed cost, measured on 2 cores (`benchmarks/bench_cluster.py --only b`): start
    3.2 s, each actor importing torch and loading the model 4.2 s, shutdown 1.4 s, ~9 s in
    all; with N >= 2 workers Ray wins once the work here exceeds 9 s x N / (N - 1) <= 18 s.
    Below RAY_MIN_SECONDS (or $CLIPSEARCH_RAY_MIN_SECONDS) the photos are encoded here."""
    least = float(os.environ.get("CLIPSEARCH_RAY_MIN_SECONDS", RAY_MIN_SECONDS))
    if seconds_here >= least:
        return True
    log.warning("--ray: the %d photos left take ~%.0f s here, less than Ray's start-up pays "
                "for (%.0f s); encoding them in this process", photos, seconds_here, least)
    return False


def ray_map(function: Any, arguments: Sequence[tuple]) -> list[Any]:
    """`function` over each argument tuple as Ray tasks, results in order (a ShardMap for the
    index build: `indexes.vectors.shards`). A task whose worker dies is retried by Ray up to
    MAX_ATTEMPTS times; the whole map has a deadline, so it never hangs."""
    import ray

    remote = ray.remote(max_retries=MAX_ATTEMPTS - 1)(function)
    refs = [remote.remote(*args) for args in arguments]
    try:
        return ray.get(refs, timeout=BUILD_DEADLINE_S)
    except ray.exceptions.GetTimeoutError:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise ClusterError(f"the index build's shards took over {BUILD_DEADLINE_S:.0f} s on "
                           "Ray; what was encoded is kept: rerun to build again") from None
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"a shard of the index build failed on Ray ({exc}); what was "
                           "encoded is kept: rerun to build again") from exc


class RayPool:
    """Actors on a Ray cluster, and the shards they encode (see the module's note)."""

    def __init__(self, target: RayTarget, setup: ActorSetup,
                 actor: type = ShardEncoder) -> None:
        """`actor`: the class each actor runs (ShardEncoder; benchmarks pass a stand-in).
        Ray must be running (`RaySession.ensure`)."""
        import ray

        # Plain arguments (no object-store references), no Ray restarts: we replace actors.
        self._actor_class = ray.remote(max_restarts=0)(actor)
        self._slots = _placements(target, setup)
        self._actors = [self._start(slot) for slot in range(len(self._slots))]
        self._times: list[float] = []
        self.workers = len(self._actors)

    def _start(self, slot: int) -> Any:
        options, setup = self._slots[slot]
        return self._actor_class.options(**options).remote(setup)

    def close(self) -> None:
        import ray

        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)

    def actor_pids(self) -> list[int]:
        import ray

        return ray.get([actor.pid.remote() for actor in self._actors])

    def actor_nodes(self) -> list[str]:
        """The Ray node each actor runs on."""
        import ray

        return ray.get([actor.node.remote() for actor in self._actors])

    def encoded(self, shards: Sequence[Sequence[str]], engine: str, margin: int
                ) -> Iterator[tuple[int, np.ndarray, list[str | None]]]:
        """(shard index, vectors, errors) for every shard, in the order they finish, encoded
        with `engine` (an EngineChoice name) after decoding with the JPEG `margin`."""
        import ray

        queue = deque(range(len(shards)))
        attempts = [0] * len(shards)
        running: dict[Any, tuple[int, int, float]] = {}  # ref -> (shard, actor slot, started)
        load = [0] * len(self._actors)
        while queue or running:
            for slot in range(len(self._actors)):
                while queue and load[slot] < IN_FLIGHT:
                    shard = queue.popleft()
                    ref = self._actors[slot].encode.remote(list(shards[shard]), engine,
                                                           margin)
                    running[ref] = (shard, slot, time.monotonic())
                    load[slot] += 1
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                shard, slot, started = running.pop(ref)
                load[slot] -= 1
                try:
                    vectors, errors = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    self._retry(shard, slot, attempts, queue, running, load, exc)
                    continue
                self._times.append(time.monotonic() - started)
                yield shard, vectors, errors
            now = time.monotonic()
            for ref, (shard, slot, started) in list(running.items()):
                if ref in running and now - started > self._deadline():
                    self._retry(shard, slot, attempts, queue, running, load,
                                f"no answer in {self._deadline():.0f} s")

    def _deadline(self) -> float:
        if len(self._times) < 3:
            return FIRST_DEADLINE_S
        return max(MIN_DEADLINE_S, DEADLINE_FACTOR * statistics.median(self._times))

    def _retry(self, shard: int, slot: int, attempts: list[int], queue: deque[int],
               running: dict[Any, tuple[int, int, float]], load: list[int],
               why: object) -> None:
        """Replace the actor in `slot` (its other shards go back in the queue too) and queue
        `shard` again, or stop the run after MAX_ATTEMPTS."""
        import ray

        attempts[shard] += 1
        if attempts[shard] >= MAX_ATTEMPTS:
            raise ClusterError(f"a shard of photos failed on {MAX_ATTEMPTS} Ray workers "
                               f"(last: {why}); what was encoded is kept: rerun to resume")
        log.warning("a Ray worker failed (%s); its photos go to a fresh one", why)
        for ref, (other, other_slot, _) in list(running.items()):
            if other_slot == slot:
                running.pop(ref)
                queue.appendleft(other)
        load[slot] = 0
        with contextlib.suppress(Exception):
            ray.kill(self._actors[slot])
        self._actors[slot] = self._start(slot)
        queue.appendleft(shard)


def _placements(target: RayTarget, setup: ActorSetup) -> list[tuple[dict[str, Any], ActorSetup]]:
    """(Ray options, setup) of each actor: `local:N` gets N one-thread actors; a cluster gets,
    on each node, one actor per GPU, or without GPUs one per CPUS_PER_ACTOR CPUs (at least
    one, sharing the node's CPUs), placed on that node while it lives (soft affinity: a
    replacement may go elsewhere)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if target.address is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        one = replace(setup, threads=1)
        return [({"num_cpus": 1}, one)] * (target.workers or cpus)
    slots = []
    for node in ray.nodes():
        resources = node.get("Resources", {})
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if not node.get("Alive") or not (cpus or gpus):
            continue
        count = gpus or max(1, cpus // CPUS_PER_ACTOR)
        per = max(1, cpus // count) if cpus else 0
        options: dict[str, Any] = {"num_cpus": per, "scheduling_strategy":
                                   NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)}
        if gpus:
            options["num_gpus"] = 1
        slots += [(options, replace(setup, threads=max(per, 1)))] * count
    if not slots:
        raise ClusterError("--ray: the cluster has no node with CPUs or GPUs")
    return slots
