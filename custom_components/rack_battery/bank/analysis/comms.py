"""Communication: a pack that keeps dropping off the bus, or fails too many polls.

A pack that the monitor cannot read is a pack whose alarms nobody sees.
On an RS485 or CAN link between packs, a pack that drops off repeatedly
usually has a loose or damaged link cable, a missing terminator, or an
address clash; and on many families the master also loses it from the
bank's charge limits, so the inverter charges the bank as if it were not
there. One missed reply is ordinary on a busy line (the coordinator
already retries it); a pattern is not.

These findings are judged over their own windows (drop-offs in a day,
failed polls in an hour), which already debounce them, so they are raised
and cleared without further delay.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from .context import RuleContext
from .findings import Observation, Severity, grade

PACK_DROPOUTS = "pack_dropouts"
PACK_ERROR_RATE = "pack_error_rate"

_MAX_DROPOUTS = 500  # drop-offs kept per pack
_MAX_POLLS = 2880  # polls kept per pack: an hour at one poll every 1.25 s


class Communication:
    """Count each pack's drop-offs and failed polls over sliding windows."""

    def __init__(self) -> None:
        """Start with no history."""
        self._answering: dict[int, bool] = {}
        self._dropouts: dict[int, deque[datetime]] = {}
        self._polls: dict[int, deque[tuple[datetime, bool]]] = {}
        # Failed polls among each pack's kept polls, counted as they come
        # and go, so a poll costs the same however long the window.
        self._failed: dict[int, int] = {}

    def forget(self, address: int) -> None:
        """Drop a pack's history, when it leaves the bank."""
        self._answering.pop(address, None)
        self._dropouts.pop(address, None)
        self._polls.pop(address, None)
        self._failed.pop(address, None)

    def observe(self, ctx: RuleContext) -> list[Observation]:
        """Record who answered this poll and judge each pack.

        ``pack_dropouts`` values: ``dropouts`` (in the window),
        ``window_hours``, ``last_dropout`` (ISO time). ``pack_error_rate``
        values: ``error_rate`` (%), ``failed``, ``polls``, ``window_minutes``.
        """
        t = ctx.thresholds
        now = ctx.now
        polled = set(ctx.snapshot.readings) | set(ctx.snapshot.failed)
        for address in polled:
            answered = address in ctx.snapshot.readings
            if not answered and self._answering.get(address, False):
                self._dropouts.setdefault(address, deque(maxlen=_MAX_DROPOUTS)).append(now)
            self._answering[address] = answered
            polls = self._polls.setdefault(address, deque(maxlen=_MAX_POLLS))
            if len(polls) == _MAX_POLLS:
                self._let_go(address, polls)
            polls.append((now, answered))
            if not answered:
                self._failed[address] = self._failed.get(address, 0) + 1

        dropout_window = timedelta(hours=t.dropout_window_hours)
        rate_window = timedelta(minutes=t.error_rate_window_minutes)
        observations: list[Observation] = []
        for address in sorted(polled):
            dropouts = self._dropouts.get(address, deque())
            while dropouts and now - dropouts[0] > dropout_window:
                dropouts.popleft()
            severity = grade(
                len(dropouts),
                [(Severity.WARNING, t.dropout_count)],
                hysteresis=0.0,
                current=ctx.current(PACK_DROPOUTS, address),
            )
            if not ctx.changes_nothing(PACK_DROPOUTS, address, severity):
                observations.append(
                    Observation(
                        rule=PACK_DROPOUTS,
                        address=address,
                        severity=severity,
                        instant=True,
                        values={
                            "dropouts": len(dropouts),
                            "window_hours": round(t.dropout_window_hours, 1),
                            "last_dropout": dropouts[-1].isoformat() if dropouts else "",
                        },
                    )
                )

            polls = self._polls[address]
            while polls and now - polls[0][0] > rate_window:
                self._let_go(address, polls)
            if len(polls) < t.error_rate_min_polls:
                continue
            failed = self._failed.get(address, 0)
            rate = 100.0 * failed / len(polls)
            severity = grade(
                rate,
                [(Severity.WARNING, t.error_rate_percent)],
                hysteresis=t.error_rate_hysteresis,
                current=ctx.current(PACK_ERROR_RATE, address),
            )
            if ctx.changes_nothing(PACK_ERROR_RATE, address, severity):
                continue
            observations.append(
                Observation(
                    rule=PACK_ERROR_RATE,
                    address=address,
                    severity=severity,
                    instant=True,
                    values={
                        "error_rate": round(rate, 1),
                        "failed": failed,
                        "polls": len(polls),
                        "window_minutes": round(t.error_rate_window_minutes, 1),
                    },
                )
            )
        return observations

    def _let_go(self, address: int, polls: deque[tuple[datetime, bool]]) -> None:
        """Drop a pack's oldest poll, and its failure from the count."""
        _, answered = polls.popleft()
        if not answered:
            self._failed[address] -= 1
