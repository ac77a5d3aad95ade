"""The job bridge (unetpp_gui.workers): jobs run on Python threads, but each is a Qt object and dies where it was
started."""

from __future__ import annotations

import threading
import weakref


def test_a_finished_job_is_deleted_on_the_thread_that_started_it(qtbot) -> None:
    """One job after another, the GUI letting go of each as its result arrives (as the window does). A job thread
    at background priority is often preempted right after its last signal; before the fix it then dropped the last
    reference itself in 1-3 % of jobs, deleting the job's QObject off the GUI thread (this test failed in 6 runs
    of 7 with 200 jobs)."""
    from unetpp_gui import workers
    from unetpp_gui.core.priority import background_priority

    @workers.job
    def short(i: int) -> int:
        background_priority()
        return i

    jobs, deleted_on = 500, []
    state: dict = {"job": None, "results": []}

    def start_next(result: int | None = None) -> None:
        state["job"] = None
        if result is not None:
            state["results"].append(result)
        if len(state["results"]) < jobs:
            job = short(len(state["results"]))
            weakref.finalize(job, lambda: deleted_on.append(threading.current_thread().name))
            job.returned.connect(start_next)
            state["job"] = job
            job.start()

    start_next()
    qtbot.waitUntil(lambda: len(deleted_on) >= jobs, timeout=60_000)
    assert state["results"] == list(range(jobs))
    assert set(deleted_on) == {threading.main_thread().name}, sorted(set(deleted_on))
    assert workers.wait_for_workers(10.0)


def test_a_job_that_fails_with_a_runtime_error_says_so_and_ends(qtbot) -> None:
    """OpenVINO fails with RuntimeError; superqt's own run ended such a job without ``errored`` or ``finished``."""
    from unetpp_gui import workers

    @workers.job
    def failing():
        yield 1
        raise RuntimeError("Infer Request is busy")

    job = failing()
    got: dict = {"yielded": [], "errors": []}
    job.yielded.connect(got["yielded"].append)
    job.errored.connect(got["errors"].append)
    with qtbot.waitSignal(job.finished, timeout=10_000):
        job.start()
    assert got["yielded"] == [1]
    assert [str(e) for e in got["errors"]] == ["Infer Request is busy"]


def test_jobs_leave_the_process_wide_warnings_hook_alone(qtbot) -> None:
    """Two jobs that overlap and end in the other order: superqt's warnings capture, set and restored from each
    job's thread, left the first job's hook installed."""
    import warnings

    from unetpp_gui import workers

    second_started, first_may_end = threading.Event(), threading.Event()

    @workers.job
    def first() -> None:
        assert second_started.wait(10)

    @workers.job
    def second() -> None:
        second_started.set()
        assert first_may_end.wait(10)

    before = warnings.showwarning
    a, b = first(), second()
    with qtbot.waitSignal(a.finished, timeout=10_000):
        a.start()
        b.start()
    with qtbot.waitSignal(b.finished, timeout=10_000):
        first_may_end.set()
    assert warnings.showwarning is before
