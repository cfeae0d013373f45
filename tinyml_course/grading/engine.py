"""The grading engine: Dask distributed, on this machine or on a cluster the instructor runs.

Autograding a class is many independent, CPU-bound jobs. nbgrader runs them one after
another; here each submission is a task of `Dask distributed <https://distributed.dask.org>`_:

* by default a local cluster started for the batch (``--jobs N``: N worker processes of one
  thread each on this machine; nothing to install or start);
* with ``--scheduler ADDRESS`` the instructor's own cluster (``dask scheduler`` and
  ``dask worker`` on a few machines, dask-jobqueue on SLURM, dask-kubernetes next to a
  JupyterHub). Same code path: the local cluster is only a cluster that happens to be here.

A worker needs the course environment (the same commit: :func:`Engine.preflight` compares
the library) and bubblewrap; submissions and results travel through the engine as data
(:mod:`tinyml_course.grading.worker`), so workers share no folder with the client.

Failures: a worker that dies while grading (its process killed, the machine lost) fails the
task (the local cluster's scheduler does not retry on its own: ``allowed-failures`` 0;
another scheduler may retry first, by its own setting); a task that outlives its time
limit is cancelled and its worker restarted. Either way :meth:`Engine.map` submits it once
more, then reports it as failed with the reason. Nothing is dropped and nothing blocks the
other submissions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyml_course.grading.workspace import GradingError

INSTALL_HINT = (
    "parallel grading runs on Dask distributed, which the instructor install brings: "
    "python3 course.py instructor (or pip install -e '.[instructor]')"
)
# The local cluster's scheduler: a task whose worker died fails at once (Engine.map retries it
# once itself, the same way for every cluster); no dashboard (no port to collide with).
LOCAL_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.worker.profile.enabled": False,
}


# A worker resource: a worker started with ``--resources grading=1`` gets one grading task
# at a time (the engine's local workers are).
RESOURCE = "grading"
# How often the client looks for finished tasks. Exactly one task per worker is in flight (a
# task waiting on a worker would fail with it if the worker died), so the next one is sent
# when one finishes: a short poll keeps workers from idling between submissions.
POLL_SECONDS = 0.02


def require_dask() -> None:
    """Raise :class:`GradingError` with the install command when Dask is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise GradingError(f"{INSTALL_HINT} ({err})") from err


@dataclass
class Outcome:
    """One item of :meth:`Engine.map`: the function's value, or why there is none.

    Attributes
    ----------
    item : object
        What was submitted.
    value : object or None
        The function's return value (also for a value ``retry`` asked to retry, once the
        retry is used up).
    error : str
        Why no value came back (empty when there is one).
    attempts : int
        1, or 2 after a retry.
    """

    item: Any
    value: Any = None
    error: str = ""
    attempts: int = 1


class Engine:
    """A Dask client for one batch: a local cluster, or a connection to an existing one.

    Parameters
    ----------
    jobs : int, optional
        Local cluster: how many submissions are graded at once (worker processes, one
        thread each; default 1). With ``scheduler``: at most this many in flight (default:
        every worker thread of the cluster).
    scheduler : str or distributed.Client, optional
        The address of a running Dask scheduler (``tcp://host:8786``), or a connected
        client (kept open afterwards). None starts a local cluster.

    Raises
    ------
    GradingError
        If Dask is missing, the scheduler cannot be reached or no worker joins it.
    ValueError
        If ``jobs`` is not a positive integer.
    """

    def __init__(self, *, jobs: int | None = None, scheduler: Any = None) -> None:
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise ValueError(
                f"jobs must be a positive integer (submissions graded at once); got {jobs!r}."
            )
        self.jobs = jobs
        self.scheduler = scheduler
        self.client: Any = None
        self.cluster: Any = None
        self._own_client = True
        self._workers: list[subprocess.Popen[bytes]] = []
        self.notes: list[str] = []
        self.resources: dict[str, int] | None = None
        self._scratch = ""
        self._log: Any = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Engine:
        require_dask()
        from distributed import Client

        if self.scheduler is not None and not isinstance(self.scheduler, str):
            self.client, self._own_client = self.scheduler, False
        elif self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="20s", set_as_default=False)
            except (OSError, TimeoutError) as err:
                raise GradingError(
                    f"cannot reach the Dask scheduler at {self.scheduler!r} ({err}); start it "
                    "(dask scheduler) or check the address (tcp://HOST:8786)."
                ) from err
        else:
            try:
                self._start_local()
            except BaseException:
                self.close()
                raise
        return self

    def ready(self, timeout: float = 120) -> None:
        """Wait until the workers have joined (the local ones all, else at least one).

        Raises
        ------
        GradingError
            If none joined in time, with the local workers' log.
        """
        try:
            self.client.wait_for_workers((self.jobs or 1) if self.local else 1, timeout=timeout)
        except (TimeoutError, OSError) as err:
            log = self._worker_log()
            raise GradingError(
                f"no Dask worker joined the scheduler {self.scheduler or 'on this machine'} within "
                f"{timeout:.0f} s; start workers (dask worker ADDRESS --nthreads 1) in the course "
                "environment." + (f"\nworker log:\n{log}" if log else "")
            ) from err

    def _start_local(self) -> None:
        """A scheduler in this process and ``jobs`` ``dask worker`` processes on the loopback.

        The workers are started as separate programs, exactly as on other machines (not
        forked from this one: nothing of this process's state reaches them, and a script
        that calls :func:`~tinyml_course.grading.autograde` needs no ``__main__`` guard).
        They leave if the scheduler goes away (``--death-timeout``).
        """
        import dask
        from distributed import Client, LocalCluster

        with dask.config.set(LOCAL_CONFIG), warnings.catch_warnings():
            # Its small HTTP server (health checks) takes another port if 8787 is taken: fine.
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            self.cluster = LocalCluster(
                n_workers=0,
                processes=True,  # tcp on the loopback; its workers are started below
                host="127.0.0.1",
                scheduler_port=0,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        self.client = Client(self.cluster, set_as_default=False)
        self.resources = {RESOURCE: 1}
        self._scratch = tempfile.mkdtemp(prefix="tinyml-grading-engine-")
        self._log = open(os.path.join(self._scratch, "workers.log"), "wb")  # noqa: SIM115
        for index in range(self.jobs or 1):
            self._workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        self.cluster.scheduler_address,
                        "--nthreads",
                        "1",
                        "--memory-limit",
                        "0",
                        "--no-dashboard",
                        "--death-timeout",
                        "60",
                        "--name",
                        f"grader-{index}",
                        "--local-directory",
                        self._scratch,
                        "--resources",
                        f"{RESOURCE}=1",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=self._log,
                    start_new_session=True,  # Ctrl-C reaches this process only; close() stops them
                )
            )

    def _worker_log(self) -> str:
        if not self._scratch:
            return ""
        with contextlib.suppress(OSError):
            text = Path(self._scratch, "workers.log").read_text(errors="replace")
            return "\n".join(text.strip().splitlines()[-15:])
        return ""

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close what this engine opened (a passed-in client stays open)."""
        with contextlib.suppress(Exception):
            if self.client is not None and self._own_client:
                self.client.close(timeout=10)
        for process in self._workers:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self._workers:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=20)
        if self._log is not None:
            self._log.close()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
        self.client = self.cluster = self._log = None
        self._workers, self._scratch = [], ""

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return str(self.client.scheduler.address) if self.client is not None else "?"

    @property
    def local(self) -> bool:
        """Whether the engine started its own cluster on this machine."""
        return self.cluster is not None

    def describe(self) -> str:
        """e.g. ``"2 local workers"`` or ``"6 workers at tcp://10.0.0.5:8786"``."""
        workers = len(self.client.nthreads())
        where = "local " if self.local else ""
        text = f"{workers} {where}worker{'s' * (workers != 1)}"
        if not self.local:
            text += f" at {self.address}"
            if self.jobs and self.jobs < workers:
                text += f", at most {self.jobs} at once"
        return text

    def slots(self) -> int:
        """How many submissions are graded at once: the workers (at most ``jobs``).

        A worker grades one submission at a time, whatever its threads.
        """
        workers = len(self.client.nthreads())
        return max(1, min(workers, self.jobs) if self.jobs and not self.local else workers)

    # ------------------------------------------------------------------ checks
    def preflight(
        self, library: str | None, sandbox: bool, warm: Any = None
    ) -> dict[str, dict[str, Any]]:
        """Check every worker: same course library and datasets as here, a working sandbox.

        Waits for the workers first (:meth:`ready`). The engine's own local workers run this
        machine's files: only their sandbox is checked.

        Parameters
        ----------
        library : str or None
            This machine's :func:`~tinyml_course.grading.worker.library_digest`.
        sandbox : bool
            Whether the workers must be able to sandbox kernels.
        warm : LabBundle, optional
            Build the lab's template on every worker meanwhile.

        Returns
        -------
        dict
            The workers' :func:`~tinyml_course.grading.worker.worker_check` answers.

        Raises
        ------
        GradingError
            Naming each worker that could not grade fairly, and the fix.
        """
        from tinyml_course.grading.worker import _datasets_digest, worker_check

        self.ready()
        answers = self.client.run(worker_check, sandbox, warm)
        datasets = _datasets_digest()
        problems = []
        for address, info in sorted(answers.items()):
            where = f"worker {address} ({info['host']})"
            if not self.local and library is not None and info["library"] != library:
                problems.append(
                    f"{where} runs another version of the course library; install the same "
                    "commit of the course there and restart the worker"
                )
            if not self.local and info["datasets"] != datasets:
                problems.append(
                    f"{where} has other datasets/ than this machine (SHA256SUMS differs)"
                )
            if sandbox and not info["sandbox"][0]:
                problems.append(f"{where} cannot sandbox the grading kernels: {info['sandbox'][1]}")
        if problems:
            raise GradingError("; ".join(problems))
        # One task per worker at a time when every worker says it grades one (the local ones
        # do): then a task never waits on a worker, and a worker that dies takes only the
        # submission it was grading with it.
        workers = self.client.scheduler_info()["workers"].values()
        self.resources = (
            {RESOURCE: 1}
            if workers and all(w.get("resources", {}).get(RESOURCE, 0) >= 1 for w in workers)
            else None
        )
        self.notes = [
            f"worker {address} has {threads} threads: it grades one submission at a time "
            "(start workers with --nthreads 1, one process per core: --nworkers N)"
            for address, threads in sorted(self.client.nthreads().items())
            if threads > 1
        ]
        return answers

    def start_preflight(
        self, library: str | None, sandbox: bool, warm: Any = None
    ) -> Callable[[], Any]:
        """:meth:`preflight` in the background; returns a function that waits for it.

        The client prepares the batch (registers the lab, collects the submissions) while
        the workers start, import nbgrader and build the lab's template.
        """
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["answers"] = self.preflight(library, sandbox, warm)
            except BaseException as err:  # handed to the waiting thread
                box["error"] = err

        thread = threading.Thread(target=run, name="grading-preflight", daemon=True)
        thread.start()

        def wait() -> Any:
            thread.join()
            if "error" in box:
                raise box["error"]
            return box["answers"]

        return wait

    # ------------------------------------------------------------------ work
    def map(
        self,
        function: Callable[..., Any],
        items: Iterable[Any],
        *,
        args: tuple[Any, ...] = (),
        name: Callable[[Any], str] = str,
        time_limit: Callable[[Any], float] | None = None,
        retry: Callable[[Any], str] | None = None,
        fatal: tuple[type[BaseException], ...] = (),
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> list[Outcome]:
        """Run ``function(*args, item)`` for every item on the workers; retry each failure once.

        At most :meth:`slots` tasks are in flight; the next is submitted as one finishes, so
        a slow or failing submission never holds up the others.

        Parameters
        ----------
        function : callable
            Runs on a worker; must be importable there (a module-level function).
        items : iterable
            One task each.
        args : tuple
            Passed before the item (e.g. the lab bundle).
        name : callable
            A short name of an item for the task's key (e.g. the student id).
        time_limit : callable, optional
            Seconds after which a task counts as lost (cancelled, its worker restarted).
        retry : callable, optional
            Given a value, a reason to run the item once more (empty: keep the value).
        fatal : tuple of exception types
            Errors of the function that stop the whole map (raised as :class:`GradingError`).
        on_outcome : callable, optional
            Called (in this thread) with each :class:`Outcome` as it is final.

        Returns
        -------
        list of Outcome
            In the order the items were given.
        """
        todo = deque((index, item, 1) for index, item in enumerate(items))
        outcomes: dict[int, Outcome] = {}
        running: dict[Any, tuple[int, Any, int, float]] = {}
        first_reason: dict[int, str] = {}

        def submit(index: int, item: Any, attempt: int) -> None:
            key = f"{function.__name__}-{name(item)}-{attempt}-{uuid.uuid4().hex[:8]}"
            future = self.client.submit(
                function, *args, item, key=key, pure=False, resources=self.resources
            )
            running[future] = (index, item, attempt, time.monotonic())

        def final(index: int, item: Any, attempt: int, value: Any, reason: str) -> None:
            if reason and attempt > 1 and first_reason.get(index) not in (None, reason):
                reason = f"{reason}; first attempt: {first_reason[index]}"
            outcome = Outcome(item, value, reason, attempt)
            outcomes[index] = outcome
            if on_outcome is not None:
                on_outcome(outcome)

        def settle(index: int, item: Any, attempt: int, value: Any, reason: str) -> None:
            if reason and attempt == 1:
                first_reason[index] = reason
                todo.appendleft((index, item, 2))
            else:
                final(index, item, attempt, value, reason)

        slots, next_count = 1, 0.0
        try:
            while todo or running:
                if time.monotonic() >= next_count:  # ask the scheduler once a second
                    slots, next_count = self.slots(), time.monotonic() + 1.0
                while todo and len(running) < slots:
                    submit(*todo.popleft())
                time.sleep(POLL_SECONDS)
                now = time.monotonic()
                for future in list(running):
                    index, item, attempt, started = running[future]
                    if future.done():
                        del running[future]
                        value, reason = self._result(future, fatal)
                        if not reason and retry is not None:
                            reason = retry(value)
                        settle(index, item, attempt, value, reason)
                    elif time_limit is not None and now - started > time_limit(item):
                        del running[future]
                        self._abandon(future)
                        limit = time_limit(item)
                        settle(
                            index,
                            item,
                            attempt,
                            None,
                            f"no result within {limit:.0f} s (its worker was restarted)",
                        )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.cancel(list(running), force=True)
            raise
        return [outcomes[index] for index in sorted(outcomes)]

    def _result(self, future: Any, fatal: tuple[type[BaseException], ...]) -> tuple[Any, str]:
        """(value, "") or (None, why it failed); a ``fatal`` error is raised as GradingError."""
        from distributed import KilledWorker

        try:
            value = future.result(timeout=60)
        except KilledWorker as err:
            return (
                None,
                f"its grading worker died ({err.last_worker.address if err.last_worker else 'worker lost'})",
            )
        except fatal as err:
            raise GradingError(str(err)) from err
        except Exception as err:  # the task failed, or was lost with its data
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return None, f"{type(err).__name__}: {message}"[:300]
        finally:
            with contextlib.suppress(Exception):
                future.release()
        return value, ""

    def _abandon(self, future: Any) -> None:
        """Cancel a task that outlived its limit and restart the worker stuck with it."""
        with contextlib.suppress(Exception):
            busy = [w for w, keys in self.client.processing().items() if future.key in keys]
            self.client.cancel([future], force=True)
            if busy:
                self.client.restart_workers(busy, timeout=120, raise_for_error=False)
