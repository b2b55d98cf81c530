"""One room's audio, one 20 ms tick at a time: who is mixed, and what each participant hears.

Pure: numpy only; the engine decodes, encodes and sends. 48 kHz mono, 960 int16 samples a frame.

Encoding costs ~0.3 ms a frame against a few microseconds for the arithmetic here, so a tick
returns *distinct mixes*, each with the set of participants who receive it, and the engine
encodes each distinct mix once and sends the same packet to all its recipients:

- only the speakers (top K by level, see `conference.speakers`) are mixed at all;
- every participant outside the speaker set hears the same mix: the sum of all speakers;
- each speaker hears its own mix-minus: the sum of the *other* speakers.

So a tick costs at most K + 1 encodes whatever the room size. A mix with nothing in it (no
speakers, or a lone speaker's own mix-minus) is marked `silent`: send silence or comfort noise,
do not encode. Muted participants are never mixed but still receive.

A tick runs in two steps so the engine decodes only what will be heard: `select(levels)` with
every participant's level (from the RTP audio-level extension, DTX, or a decoded frame), then
`mix(frames)` with the decoded frames of the speakers. `tick(frames, levels)` does both.
Buffers are allocated once; the PCM of a returned mix belongs to the mixer and is overwritten
by the next tick, so the engine encodes it (or copies it) before then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from conference.limiter import LimiterBank, LimiterSettings
from conference.speakers import ParticipantId, SpeakerPolicy, SpeakerSelector
from voice.media.level import pcm_level_dbov

FRAME_SAMPLES = 960  # 20 ms at 48 kHz


# Mix and TickResult are made every tick, so they are plain slotted dataclasses (a frozen one
# costs four times as much to build); treat them as read-only.


@dataclass(slots=True, eq=False)
class Mix:
    """One distinct mix of a tick: encode `pcm` once, send it to every recipient."""

    pcm: np.ndarray  # int16[960], owned by the mixer: valid until its next tick
    recipients: frozenset[ParticipantId]
    speaker: ParticipantId | None  # whose mix-minus this is; None for the listeners' mix
    silent: bool  # nothing to hear: send silence, skip the encoder


@dataclass(slots=True, eq=False)
class TickResult:
    speakers: tuple[ParticipantId, ...]
    speakers_changed: bool  # the cue for a `room.speaking` event
    mixes: tuple[Mix, ...]
    # What a listener hears (the sum of all speakers, limited), even when nobody listens:
    # for recording the room. None for an empty room.
    room_mix: np.ndarray | None = None

    @property
    def encode_count(self) -> int:
        """Encodes this tick needs: one per distinct mix that is not silent."""
        return sum(1 for mix in self.mixes if not mix.silent)

    def mix_for(self, participant: ParticipantId) -> Mix | None:
        for mix in self.mixes:
            if participant in mix.recipients:
                return mix
        return None


class RoomMixer:
    """The mixer of one room: its roster, its speaker set and its per-mix state.

    A tick works on matrices, one row per distinct mix: row 0 is the listeners' mix (the sum
    of all speakers), row i + 1 the mix-minus of speaker i. That keeps a tick to about a dozen
    numpy calls whether 3 or 100 talkers are mixed.
    """

    def __init__(
        self,
        policy: SpeakerPolicy | None = None,
        limiter: LimiterSettings | None = None,
    ) -> None:
        limiter = limiter or LimiterSettings()
        self._samples = limiter.frame_samples
        self._selector = SpeakerSelector(policy)
        self._roster: dict[ParticipantId, None] = {}
        self._muted: set[ParticipantId] = set()
        self._silence = np.zeros(self._samples, dtype=np.int16)
        self._silence.setflags(write=False)
        self._limiters = LimiterBank(limiter)
        self._capacity = 0
        self._grow(policy.max_speakers if policy and policy.max_speakers else 3)
        self._solo: dict[ParticipantId, frozenset[ParticipantId]] = {}  # a speaker's recipients
        self._mixed: tuple[ParticipantId, ...] = ()  # the speakers the gains are laid out for
        self._changed = False
        self._everyone: frozenset[ParticipantId] | None = None
        self._listeners: frozenset[ParticipantId] | None = None
        self._quiet: TickResult | None = None

    def _grow(self, speakers: int) -> None:
        """Size the matrices for `speakers` talkers (K=None rooms grow as talkers join)."""
        if speakers <= self._capacity:
            return
        self._capacity = speakers = max(speakers, 2 * self._capacity)
        n = self._samples
        # The speakers' frames, widened to int32 on the way in: the sums need no casting.
        self._frames = np.zeros((speakers, n), dtype=np.int32)
        self._sums = np.zeros((speakers + 1, n), dtype=np.int32)  # the mixes, before limiting
        self._out = np.zeros((speakers + 1, n), dtype=np.int16)
        self._rows = list(self._out)  # one view per mix, made once
        self._limiters.resize(speakers + 1)

    # ---------------------------------------------------------------- roster

    @property
    def participants(self) -> frozenset[ParticipantId]:
        if self._everyone is None:
            self._everyone = frozenset(self._roster)
        return self._everyone

    @property
    def speakers(self) -> tuple[ParticipantId, ...]:
        return self._selector.speakers

    @property
    def selector(self) -> SpeakerSelector:
        return self._selector

    @property
    def exact(self) -> bool:
        """Whether the last `mix()` left every mix unlimited: each is then exactly the sum
        of its speakers' frames, so a mix of a single speaker is that speaker's frame and
        the engine may forward the speaker's own packet instead of encoding the mix."""
        return self._limiters.exact

    def is_muted(self, participant: ParticipantId) -> bool:
        return participant in self._muted

    def join(self, participant: ParticipantId) -> None:
        if participant not in self._roster:
            self._roster[participant] = None
            self._roster_changed()

    def leave(self, participant: ParticipantId) -> None:
        if participant in self._roster:
            del self._roster[participant]
            self._muted.discard(participant)
            self._drop_from_mix(participant)
            self._roster_changed()

    def set_muted(self, participant: ParticipantId, muted: bool = True) -> None:
        """A muted participant leaves the speaker set at once and is never mixed."""
        if participant not in self._roster:
            raise KeyError(participant)
        if muted:
            self._muted.add(participant)
            self._drop_from_mix(participant)
        else:
            self._muted.discard(participant)

    def _drop_from_mix(self, participant: ParticipantId) -> None:
        if self._selector.remove(participant):
            self._changed = True
            self._speakers_changed()

    def _roster_changed(self) -> None:
        self._everyone = self._listeners = None
        self._quiet = None

    # ---------------------------------------------------------------- the tick

    def select(self, levels: Mapping[ParticipantId, float | None]) -> bool:
        """Step 1 of a tick: update the speaker set from this tick's levels (dBov).

        `levels` may hold anyone; participants not in the room or muted are ignored, and
        anyone absent counts as silent. Returns whether the speaker set changed.
        """
        if levels:
            roster, muted = self._roster, self._muted
            levels = {p: v for p, v in levels.items() if p in roster and p not in muted}
        changed = self._selector.update(levels)
        if changed:
            self._changed = True
            self._speakers_changed()
        return changed

    def mix(self, frames: Mapping[ParticipantId, np.ndarray | None]) -> TickResult:
        """Step 2 of a tick: mix the speakers' frames (int16[960]; absent or None = silent)."""
        changed, self._changed = self._changed, False
        if not self._roster:
            return TickResult((), changed, ())
        speakers = self._selector.speakers
        if not speakers:
            return self._quiet_tick(changed)

        count = len(speakers)
        stacked = self._frames[:count]
        sending = []  # per speaker: whether it has a frame this tick
        shape = (self._samples,)
        for row, speaker in zip(stacked, speakers, strict=True):
            frame = frames.get(speaker)
            if frame is None:
                row.fill(0)
            elif frame.dtype != np.int16 or frame.shape != shape:
                got = f"{frame.dtype} {frame.shape}"
                raise ValueError(f"{speaker}: a frame is {shape[0]} int16 samples, got {got}")
            else:
                np.copyto(row, frame)
            sending.append(frame is not None)
        heard = sum(sending)

        sums = self._sums[: count + 1]
        np.add.reduce(stacked, axis=0, out=sums[0])  # what the listeners hear
        np.subtract(sums[0], stacked, out=sums[1:])  # each speaker: everyone but itself
        self._limiters.process(sums, self._out[: count + 1])

        rows = self._rows
        mixes: list[Mix] = []
        listeners = self._listener_set()
        if listeners:
            mixes.append(Mix(rows[0] if heard else self._silence, listeners, None, not heard))
        for index, speaker in enumerate(speakers):
            silent = heard == sending[index]  # nobody else to hear
            pcm = self._silence if silent else rows[index + 1]
            mixes.append(Mix(pcm, self._solo[speaker], speaker, silent))
        return TickResult(speakers, changed, tuple(mixes), rows[0])

    def tick(
        self,
        frames: Mapping[ParticipantId, np.ndarray | None],
        levels: Mapping[ParticipantId, float | None] | None = None,
    ) -> TickResult:
        """Both steps, for callers that decoded everyone; a missing level is measured."""
        measured = dict(levels) if levels else {}
        for participant, frame in frames.items():
            if frame is not None and participant not in measured:
                measured[participant] = pcm_level_dbov(frame)
        self.select(measured)
        return self.mix(frames)

    # ---------------------------------------------------------------- helpers

    def _quiet_tick(self, changed: bool) -> TickResult:
        # Nobody speaks: everyone gets the same silence. Cached, so an idle room costs a
        # couple of attribute lookups a tick.
        if not self._limiters.at_unity:
            self._limiters.relax()
        quiet = self._quiet
        if quiet is None:
            silence = Mix(self._silence, self.participants, None, True)
            quiet = self._quiet = TickResult((), False, (silence,), self._silence)
        if changed:
            return TickResult((), True, quiet.mixes, quiet.room_mix)
        return quiet

    def _listener_set(self) -> frozenset[ParticipantId]:
        if self._listeners is None:
            selector = self._selector
            self._listeners = frozenset(p for p in self._roster if not selector.is_speaker(p))
        return self._listeners

    def _speakers_changed(self) -> None:
        """Lay the per-mix limiter gains out for the new speaker set.

        A speaker keeps its mix-minus gain; a new speaker heard the listeners' mix until now,
        so its mix-minus starts from that gain: no jump in what it hears.
        """
        speakers = self._selector.speakers
        self._grow(len(speakers))
        before = {speaker: row + 1 for row, speaker in enumerate(self._mixed)}
        self._limiters.remap([0] + [before.get(s, 0) for s in speakers])
        self._mixed = speakers
        self._solo = {s: self._solo.get(s) or frozenset((s,)) for s in speakers}
        self._listeners = None
