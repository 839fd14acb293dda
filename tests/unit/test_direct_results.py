"""A direct pool worker's messages to the owner (worker.DirectJobs): the results of quick epochs go
together, a slow epoch holds back nothing, and nothing held outlives the marks of its jobs."""

from __future__ import annotations

from types import SimpleNamespace

from netrun.jobs import Claim
from netrun.worker import HOLD_SECONDS, DirectJobs, _Result


class _Host(SimpleNamespace):
    """The parts of a WorkerHost that DirectJobs uses; `events` is the order of sends and mark resets."""

    def claimed(self, held: list) -> None:
        self.events.append(("marks cleared", [job.epoch_id for job in held]))


def _link(inbox: list) -> tuple[DirectJobs, list]:
    events: list = []
    host = _Host(events=events, renew=None)

    def take(_timeout: float):
        return inbox.pop(0) if inbox else None

    link = DirectJobs(host, "w1", take, lambda message: events.append(("sent", message)), lambda: True)
    return link, events


def _job(epoch: str, *, in_hand: bool = True) -> tuple:
    return (Claim(epoch, "Work", 0), [], 0, in_hand, {})


def _run(link: DirectJobs, job: tuple, seconds: float) -> None:
    link.starting(job)
    link.ran(_Result(job[0], b"blob", ()), [], seconds)


def _sent(events: list) -> list:
    return [message for what, message in events if what == "sent"]


def test_the_results_of_quick_epochs_go_to_the_owner_in_one_message():
    jobs = [_job("e1", in_hand=False), _job("e2"), _job("e3")]
    link, events = _link([jobs])
    got = link.next([], False)
    for job in got:
        _run(link, job, HOLD_SECONDS / 10)
    assert _sent(events) == []  # held: the epochs are quick
    assert link.next([], False) == []  # nothing more to run: what is held goes before the worker waits
    [batch] = _sent(events)
    assert batch[0] == "batch"
    assert [m[2].epoch_id for m in batch[1] if m[0] == "result"] == ["e1", "e2", "e3"]
    # each in-hand start is told with the result before it
    assert [m[6] for m in batch[1]] == [("e2", 0), ("e3", 0), None]


def test_a_slow_epoch_holds_back_no_result():
    jobs = [_job("e1", in_hand=False), _job("e2")]
    link, events = _link([jobs])
    got = link.next([], False)
    _run(link, got[0], HOLD_SECONDS * 10)
    link.starting(got[1])  # the result of e1 (slow) goes before e2 runs, with e2's start
    [message] = _sent(events)
    assert message[0] == "result" and message[2].epoch_id == "e1" and message[6] == ("e2", 0)


def test_held_results_are_sent_before_the_marks_of_their_jobs_go():
    inbox = [[_job("e1", in_hand=False)]]
    link, events = _link(inbox)
    [job] = link.next([], False)
    _run(link, job, HOLD_SECONDS / 10)
    inbox.append([_job("e2")])  # new jobs arrive while the result is held
    link.next([], False)
    kinds = [what for what, _ in events]
    assert kinds.index("sent") < len(kinds) - 1 and kinds[-1] == "marks cleared"
    assert _sent(events)[0][2].epoch_id == "e1"
