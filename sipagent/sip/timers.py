"""Transaction timers (RFC 3261 §17 and Table 4 of Appendix A, RFC 6026 §8.11).

Every timer is a deadline on the caller's monotonic clock; nothing here reads a clock. The durations:

    timer  machine            unreliable (UDP)             reliable (TCP, TLS)   meaning
    A      INVITE client      T1, doubling                 off                   INVITE retransmission
    B      INVITE client      64*T1                        64*T1                 INVITE timeout
    D      INVITE client      max(32 s, 64*T1)             0                     wait for response retransmits
    E      non-INVITE client  T1, doubling up to T2        off                   request retransmission
    F      non-INVITE client  64*T1                        64*T1                 request timeout
    G      INVITE server      T1, doubling up to T2        off                   non-2xx retransmission
    H      INVITE server      64*T1                        64*T1                 wait for ACK
    I      INVITE server      T4                           0                     wait for ACK retransmits
    J      non-INVITE server  64*T1                        0                     wait for request retransmits
    K      non-INVITE client  T4                           0                     wait for response retransmits
    L      INVITE server      64*T1                        64*T1                 RFC 6026 Accepted: absorb INVITEs
    M      INVITE client      64*T1                        64*T1                 RFC 6026 Accepted: take 2xx forks
    TRYING INVITE server      200 ms                       200 ms                §17.2.1: automatic 100 (Trying)

"off" means the timer is never armed; 0 means the state it guards is left at once (§17.1.1.2, §17.1.2.2,
§17.2.1, §17.2.2): a reliable transport neither loses nor repeats messages, so there is nothing to absorb.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sipagent.sip.errors import LocalProtocolError

__all__ = ["RETRANSMIT_TIMERS", "Timer", "TimerConfig", "TimerSet"]


class Timer(enum.Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741  # the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    TRYING = "TRYING"


RETRANSMIT_TIMERS = frozenset({Timer.A, Timer.E, Timer.G})
"""The timers that drive retransmission over unreliable transports; never armed over reliable ones."""
# Timers that guard a wait for stray retransmissions: zero over a reliable transport.
_ABSORB_TIMERS = frozenset({Timer.D, Timer.I, Timer.J, Timer.K})


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base values of §17.1.1.1: ``t1`` RTT estimate, ``t2`` retransmit cap, ``t4`` network lifetime.

    ``trying_delay`` is how long an INVITE server transaction waits for the TU before sending 100 (Trying)
    itself (§17.2.1: 200 ms); 0 sends it as soon as the transaction starts.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float = 0.2

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 > 0 and self.trying_delay >= 0):
            raise LocalProtocolError(
                f"timer values need 0 < t1 <= t2, t4 > 0 and trying_delay >= 0, not "
                f"t1={self.t1} t2={self.t2} t4={self.t4} trying_delay={self.trying_delay}"
            )

    def initial(self, timer: Timer, *, reliable: bool) -> float | None:
        """The first duration of ``timer``; ``None`` when it is not used on this kind of transport."""
        if timer in RETRANSMIT_TIMERS:
            return None if reliable else self.t1
        if reliable and timer in _ABSORB_TIMERS:
            return 0.0
        if timer is Timer.D:
            # §17.1.1.2: "at least 32 seconds"; a larger T1 means the server's Timer H (64*T1) runs longer.
            return max(32.0, 64 * self.t1)
        if timer in (Timer.I, Timer.K):
            return self.t4
        if timer is Timer.TRYING:
            return self.trying_delay
        return 64 * self.t1  # B, F, H, J, L, M

    def backoff(self, timer: Timer, previous: float, *, proceeding: bool = False) -> float:
        """The duration of ``timer`` after it fired with ``previous``.

        Timer A doubles without a cap (§17.1.1.2); E and G double up to T2 (§17.1.2.2, §17.2.1); E in the
        Proceeding state is T2 outright, since the server has shown it is alive (§17.1.2.2).
        """
        if timer is Timer.A:
            return 2 * previous
        if timer is Timer.E and proceeding:
            return self.t2
        return min(2 * previous, self.t2)


class TimerSet:
    """The running timers of one transaction: a deadline and the duration it was armed with."""

    __slots__ = ("_deadlines", "_durations")

    def __init__(self) -> None:
        self._deadlines: dict[Timer, float] = {}
        self._durations: dict[Timer, float] = {}

    def arm(self, timer: Timer, now: float, duration: float) -> None:
        self._deadlines[timer] = now + duration
        self._durations[timer] = duration

    def cancel(self, timer: Timer) -> None:
        self._deadlines.pop(timer, None)

    def clear(self) -> None:
        self._deadlines.clear()

    def duration(self, timer: Timer) -> float | None:
        """The duration ``timer`` was last armed with (kept after it fires, for the backoff)."""
        return self._durations.get(timer)

    def deadlines(self) -> dict[Timer, float]:
        return dict(self._deadlines)

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the earliest timer whose deadline is at or before ``now``."""
        due = [(deadline, timer) for timer, deadline in self._deadlines.items() if deadline <= now]
        if not due:
            return None
        # Ties go to the timer armed first (dict order): min() over (deadline, index) keeps that stable.
        _, _, timer = min((deadline, i, timer) for i, (deadline, timer) in enumerate(due))
        del self._deadlines[timer]
        return timer
