"""Notifications: the master posts a study's events to the webhook its spec
names (`notify: {url, on: [finished, failed, border]}`), as JSON that Slack-compatible
receivers accept: `{"text": "..."}` plus structured fields (`event`, `study_id`,
`study`, ...).

The events:
- `finished`: the study completed (its last stage, or a stop rule) or was stopped;
  with its trials per state (diverged ones included) and its best score.
- `failed`: a trial's code raised. At most one POST per study a minute (`failed_every_s`):
  the failures in between are counted in the next one's `suppressed` and in the
  `finished` summary; the circuit breaker pauses a study that keeps failing. Diverged
  trials get no POST of their own (a coarse stage is expected to diverge some: the seed's
  wide learning rates); `finished` counts them.
- `border`: a stage closed with a best value near a border of its range, one POST per
  stage with every flag (`flags`), the first one's words in `message`.

The hooks (`study_finished`, `trial_failed`, `flags_raised`) are one-line calls where the
events happen; they read what they need in the transaction and hand the POST to run after
its commit (the writer's `Batch.after_commit`; a service's own session: its commit), never
if it rolls back. The POSTs run on one background thread from a bounded queue, each tried
`tries` times with exponential back-off, so a slow or dead receiver never holds a request,
the writer or the study; what does not fit the queue is dropped and logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, object_session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.spec import NOTIFY_EVENTS
from gridless.master.context import ranked

__all__ = ["Notifier", "flags_raised", "redact_url", "study_finished", "trial_failed"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


def redact_url(url: str) -> str:
    """The URL without its path and query, where webhook secrets live (for logs and the
    API's copy of the spec)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..." if parts.path not in ("", "/") else url


def _slack_text(text: str) -> str:
    """Slack's own escaping: `<!channel>` in a trial's error message must not ping anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Notifier:
    """One background thread posting queued notifications, with retries.

    Args:
        queue_size: notifications waiting at most; more are dropped (and logged).
        tries: attempts per notification (a transport error, a 5xx, 408 or 429 retries).
        backoff_s: the wait after the first failed attempt; it doubles each time.
        timeout_s: per attempt.
        failed_every_s: at most one `failed` POST per study within this many seconds.
    """

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        tries: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        failed_every_s: float = 60.0,
    ) -> None:
        self.tries, self.backoff_s, self.timeout_s = tries, backoff_s, timeout_s
        self.failed_every_s = failed_every_s
        self._queue: queue.Queue[tuple[str, Payload] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._failures: dict[int, tuple[float, int]] = {}  # study: (last POST, suppressed)
        self.sent = 0  # delivered (for tests and logs)
        self.dropped = 0  # did not fit the queue
        self.given_up = 0  # every attempt failed

    def send(self, url: str, payload: Payload) -> bool:
        """Queue a POST of `payload` to `url`; False when the queue is full (dropped)."""
        if self._closing.is_set():
            return False
        self._start()
        try:
            self._queue.put_nowait((url, payload))
        except queue.Full:
            self.dropped += 1
            log.warning(
                "notification %s to %s dropped: %d are waiting",
                payload.get("event"),
                redact_url(url),
                self._queue.qsize(),
            )
            return False
        return True

    def send_failure(self, url: str, study_id: int, payload: Payload) -> bool:
        """`send` a trial failure unless the study had one posted within
        `failed_every_s`; a skipped one is counted in the next one's `suppressed`."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._failures.get(study_id, (None, 0))
            if last is not None and now - last < self.failed_every_s:
                self._failures[study_id] = (last, suppressed + 1)
                return False
            self._failures[study_id] = (now, 0)
        if suppressed:
            payload = {**payload, "suppressed": suppressed}
            payload["text"] += f" ({suppressed} more failed since the last notice)"
        return self.send(url, payload)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued notification was delivered or given up; False when
        `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0 or not done.wait(left):
                    return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread once what is queued was tried (retries included) or
        `timeout_s` passed in all; after that no retry waits any more."""
        deadline = time.monotonic() + timeout_s
        thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                pass
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._closing.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="gridless-notify", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            while (item := self._queue.get()) is not None:
                try:
                    self._post(client, *item)
                except Exception:  # never let one notification end the thread
                    self.given_up += 1
                    log.exception("notification %s failed", item[1].get("event"))
                finally:
                    self._queue.task_done()

    def _post(self, client: httpx.Client, url: str, payload: Payload) -> None:
        where = redact_url(url)
        for attempt in range(self.tries):
            try:
                status = client.post(url, json=payload).status_code
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            else:
                if status < 300:
                    self.sent += 1
                    return
                why = f"HTTP {status}"
                if status < 500 and status not in (408, 429):
                    break  # the receiver refuses it: trying again changes nothing
            if attempt + 1 == self.tries:
                break
            log.info("notification %s to %s: %s; retrying", payload["event"], where, why)
            if self._closing.wait(self.backoff_s * 2**attempt):
                break  # the master is shutting down
        self.given_up += 1
        log.warning("notification %s to %s not delivered: %s", payload["event"], where, why)


# -- the hooks --------------------------------------------------------------------------


def _subscribed(s: Session | None, study: StudyRow | None, name: str) -> tuple[Any, str] | None:
    """(notifier, url) when `study`'s spec asks for event `name` and the session belongs
    to a master with a notifier."""
    if s is None or study is None:
        return None
    notifier = s.info.get("notifier")
    wanted = (study.spec or {}).get("notify")
    if notifier is None or not wanted or name not in wanted.get("on", NOTIFY_EVENTS):
        return None
    return notifier, str(wanted["url"])


def _after_commit(s: Session, action: Callable[[], Any]) -> None:
    """Run `action` once `s`'s transaction commits: the writer's batch, when `s` is the
    writer's (its savepoint rolled back: never), else the session's own commit."""
    batch = s.info.get("batch")
    if batch is not None:
        batch.after_commit(action)
    else:
        event.listen(s, "after_commit", lambda _session: action(), once=True)


def _head(study: StudyRow, name: str) -> Payload:
    return {"event": name, "study_id": study.id, "study": study.name}


def study_finished(study: StudyRow) -> None:
    """The study completed or was stopped: post its summary after the commit."""
    s = object_session(study)
    target = _subscribed(s, study, "finished")
    if s is None or target is None:
        return
    notifier, url = target
    states = dict(
        s.execute(
            select(TrialRow.state, func.count())
            .where(TrialRow.study_id == study.id)
            .group_by(TrialRow.state)
        ).all()
    )
    best = s.scalars(ranked(study).where(TrialRow.best_score.is_not(None)).limit(1)).first()
    score, number = (best.best_score, best.number) if best is not None else (None, None)

    def post() -> None:  # after the commit: the stop rule's reason is set by then
        reason = study.stop_reason or study.state_reason
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        text = f"gridless: study {study.name} (id {study.id}) {study.state}"
        text += f": {sum(states.values())} trials ({counts or 'none'})"
        if score is not None:
            text += f", best {study.metric} {score:.4g} (trial {number})"
        if reason:
            text += f". {reason}"
        notifier.send(
            url,
            {
                "text": _slack_text(text),
                **_head(study, "finished"),
                "state": study.state,
                "reason": reason,
                "trials": states,
                "metric": study.metric,
                "best_score": score,
                "best_trial": number,
            },
        )

    _after_commit(s, post)


def trial_failed(trial: TrialRow) -> None:
    """A trial's code raised: post it after the commit (throttled per study)."""
    s = object_session(trial)
    study = s.get(StudyRow, trial.study_id) if s is not None else None
    target = _subscribed(s, study, "failed")
    if s is None or study is None or target is None:
        return
    notifier, url = target
    error = (trial.error or "").strip()
    text = f"gridless: study {study.name} (id {study.id}): trial {trial.number} failed"
    if error:
        text += f": {error.splitlines()[0].strip()[:300]}"  # the exception, first
    payload = {
        "text": _slack_text(text),
        **_head(study, "failed"),
        "trial": trial.number,
        "trial_id": trial.id,
        "error": error[-2000:] or None,
        "suppressed": 0,
    }
    _after_commit(s, lambda: notifier.send_failure(url, study.id, payload))


def flags_raised(stage: StageRow) -> None:
    """A stage closed with border flags: post them after the commit."""
    flags = (stage.decisions or {}).get("flags") or []
    s = object_session(stage)
    study = s.get(StudyRow, stage.study_id) if s is not None and flags else None
    target = _subscribed(s, study, "border")
    if s is None or study is None or target is None:
        return
    notifier, url = target
    messages = [str(f.get("message", "")) for f in flags]
    text = f"gridless: study {study.name} (id {study.id}), stage {stage.index + 1}: "
    payload = {
        "text": _slack_text(text + "; ".join(messages)),
        **_head(study, "border"),
        "stage": stage.index + 1,
        "message": messages[0],
        "flags": flags,
    }
    _after_commit(s, lambda: notifier.send(url, payload))
