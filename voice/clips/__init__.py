"""Audio clips: uploaded audio decoded, normalised, encoded once to Opus and stored, then
played to any number of listeners. Ringback tones and hotline prompts both build on this, so
neither service needs the other."""

from voice.clips.decode import BadAudio, decode_audio
from voice.clips.library import ClipInfo, ClipLibrary
from voice.clips.prepare import prepare_loop

__all__ = ["BadAudio", "ClipInfo", "ClipLibrary", "decode_audio", "prepare_loop"]
