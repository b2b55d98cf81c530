"""Who is speaking in a room: the K loudest active talkers, with hysteresis so the set is calm.

Pure: no I/O, no numpy. The selector sees one level per participant per 20 ms tick (from the
RTP audio-level extension or the decoded frame) and keeps the speaker set that the mixer mixes
and that `room.speaking` events report. Only the speakers are mixed, so the set decides who is
heard: it must take a new voice in quickly when there is room, and otherwise change only for a
clearly louder, sustained talker, never for a cough.

Rules, each tick:
1. Levels are smoothed per participant by an exponential moving average of the frame power
   (not of dB: a talker who starts speaking shows up within a frame or two, and a pause between
   words does not drag the average to -127). A frame at or above the threshold is "active".
2. A speaker quiet (no active frame) for `hang_ms` leaves the set; muting or leaving is at once.
3. With a free slot, a participant active for `onset_ms` in a row joins, loudest first.
4. With the set full, a participant replaces the weakest speaker only after `switch_hold_ms`
   of active frames during each of which it is `switch_margin_db` louder (smoothed) than that
   speaker, or that speaker is silent (in a pause longer than `gap_ms`). The challenger's own
   pauses up to `gap_ms` between syllables keep the count; longer ones reset it. So a burst
   shorter than the hold never gets in, and in turn-taking the next talker is in about
   `gap_ms + switch_hold_ms` after the previous one stops.
5. Ties break on the participant id, so the same levels always give the same set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

ParticipantId = str


@dataclass(frozen=True)
class SpeakerPolicy:
    # K, the room setting: 3 by default; None mixes every active talker (like Janus).
    max_speakers: int | None = 3
    # Frame RMS in dBov that counts as speech. Speech under AGC sits around -20..-35 dBov and
    # a quiet room around -55..-70; LiveKit's default "active" level is -35. -40 keeps soft
    # talkers in while room noise stays out.
    threshold_dbov: float = -40.0
    smoothing_ms: float = 300.0  # time constant of the loudness average used for ranking
    onset_ms: int = 40  # two frames: a lone click does not take a free slot
    switch_margin_db: float = 6.0  # twice the power: similar voices never trade places
    switch_hold_ms: int = 300  # a cough or a laugh is shorter; a sentence is longer
    hang_ms: int = 800  # bridges pauses between phrases, so speaking events do not flicker
    gap_ms: int = 100  # pauses between syllables that do not break a challenge
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if self.max_speakers is not None and self.max_speakers < 1:
            raise ValueError("max_speakers must be at least 1, or None for everyone")
        if self.frame_ms <= 0 or self.smoothing_ms <= 0:
            raise ValueError("frame_ms and smoothing_ms must be positive")

    def ticks(self, ms: float) -> int:
        return max(1, math.ceil(ms / self.frame_ms))


@dataclass(slots=True)
class _Voice:
    """What the selector remembers about a participant who was recently audible."""

    power: float = 0.0  # smoothed mean square, 1.0 = full scale
    last_active: int = -(10**9)  # tick of the last frame at or above the threshold
    onset: int = 0  # active frames in a row
    challenge: int = 0  # counted ticks of beating the weakest speaker
    challenge_tick: int = -(10**9)


def _power(dbov: float) -> float:
    return 10.0 ** (dbov / 10.0)


class SpeakerSelector:
    """Keeps the speaker set of one room, tick by tick."""

    def __init__(self, policy: SpeakerPolicy | None = None) -> None:
        self.policy = policy = policy or SpeakerPolicy()
        self._alpha = 1.0 - math.exp(-policy.frame_ms / policy.smoothing_ms)
        self._decay = 1.0 - self._alpha
        self._threshold = policy.threshold_dbov
        # Frames more than 10 dB under the threshold add under 10 % of a threshold frame's
        # power: skipping them keeps a room of open, quiet microphones cheap.
        self._floor_dbov = policy.threshold_dbov - 10.0
        self._forget_power = _power(policy.threshold_dbov - 20.0)
        self._margin = _power(policy.switch_margin_db)
        self._hold = policy.ticks(policy.switch_hold_ms)
        self._hang = policy.ticks(policy.hang_ms)
        self._onset = policy.ticks(policy.onset_ms)
        self._gap = policy.ticks(policy.gap_ms)
        self._tick = 0
        self._voices: dict[ParticipantId, _Voice] = {}
        self._speakers: dict[ParticipantId, None] = {}  # insertion-ordered set
        self._sorted: tuple[ParticipantId, ...] = ()
        self._pending_change = False

    @property
    def speakers(self) -> tuple[ParticipantId, ...]:
        """The current speakers, sorted by id."""
        return self._sorted

    def is_speaker(self, participant: ParticipantId) -> bool:
        return participant in self._speakers

    def level_dbov(self, participant: ParticipantId) -> float:
        """The smoothed level the ranking uses; -127 for someone not heard lately."""
        voice = self._voices.get(participant)
        if voice is None or voice.power <= 0.0:
            return -127.0
        return max(-127.0, 10.0 * math.log10(voice.power))

    def remove(self, participant: ParticipantId) -> bool:
        """Forget a participant who left or was muted; True if it was a speaker."""
        self._voices.pop(participant, None)
        if participant in self._speakers:
            del self._speakers[participant]
            self._sorted = tuple(sorted(self._speakers))
            self._pending_change = True
            return True
        return False

    def update(self, levels: Mapping[ParticipantId, float | None]) -> bool:
        """Advance one tick with this tick's frame levels (dBov; None or absent = silent).

        Returns whether the speaker set changed since the previous update (including
        removals in between): the cue for a `room.speaking` event.
        """
        changed, self._pending_change = self._pending_change, False
        if not levels and not self._voices:
            return changed  # a silent room: nothing to smooth, nobody to drop
        self._tick = tick = self._tick + 1
        self._smooth(levels, tick)
        voices, speakers = self._voices, self._speakers

        for speaker in [s for s in speakers if tick - voices[s].last_active >= self._hang]:
            del speakers[speaker]
            changed = True

        candidates = [
            pid for pid, v in voices.items() if v.last_active == tick and pid not in speakers
        ]
        if candidates:
            candidates.sort(key=lambda pid: (-voices[pid].power, pid))
            for pid in candidates:
                changed |= self._consider(pid, voices[pid], tick)
        if changed:
            self._sorted = tuple(sorted(speakers))
        return changed

    def _smooth(self, levels: Mapping[ParticipantId, float | None], tick: int) -> None:
        voices = self._voices
        forgotten = []
        for pid, voice in voices.items():
            voice.power *= self._decay
            if voice.power < self._forget_power and pid not in self._speakers:
                forgotten.append(pid)
        for pid in forgotten:
            del voices[pid]
        floor, threshold, alpha = self._floor_dbov, self._threshold, self._alpha
        for pid, level in levels.items():
            if level is None or level < floor:
                continue
            voice = voices.get(pid)
            if voice is None:
                voice = voices[pid] = _Voice()
            voice.power += alpha * _power(level)
            if level >= threshold:
                voice.onset = voice.onset + 1 if voice.last_active == tick - 1 else 1
                voice.last_active = tick

    def _consider(self, pid: ParticipantId, voice: _Voice, tick: int) -> bool:
        """Let an active non-speaker in, if the rules allow; True if the set changed."""
        speakers, limit = self._speakers, self.policy.max_speakers
        if limit is None or len(speakers) < limit:
            if voice.onset >= self._onset:
                speakers[pid] = None
                voice.challenge = 0
                return True
            return False
        weakest = self._weakest(tick)
        rival = self._voices[weakest]
        if tick - voice.challenge_tick > self._gap:
            voice.challenge = 0  # the challenger paused too long: start over
        louder = voice.power >= rival.power * self._margin
        if not (louder or tick - rival.last_active > self._gap):
            voice.challenge = 0
            return False
        voice.challenge += 1
        voice.challenge_tick = tick
        if voice.challenge < self._hold:
            return False
        del speakers[weakest]
        speakers[pid] = None
        voice.challenge = 0
        return True

    def _weakest(self, tick: int) -> ParticipantId:
        # Speakers in a pause go first, then the softest; the id settles exact ties.
        voices, gap = self._voices, self._gap
        return min(
            self._speakers,
            key=lambda s: (tick - voices[s].last_active <= gap, voices[s].power, s),
        )
