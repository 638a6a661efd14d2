"""The pocketsphinx side of the offline STT, run inside a worker process (see :mod:`.stt` for the design).

pocketsphinx is imported here only, so the event loop's process never loads its models. A ``Decoder`` costs about
90 MB and 0.5 s to load, so decoders are not owned by calls: a call borrows one from its worker for the length of
an utterance (START to END) and gives it back. Memory then grows with the number of callers speaking at the same
moment, not with the number of open calls, and a spare is loaded while the worker is idle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sipagent.providers.offline.stt import build_grammar, normalize

__all__ = ["SphinxEngine"]

_MAX_IDLE_DECODERS = 2
_FALLBACK_CHUNK = 3200 * 2  # bytes: the fallback pass is fed in 200 ms pieces, like the live stream

Options = tuple[tuple[str, Any], ...]


class _Decoder:
    __slots__ = ("decoder", "grammars", "lm")

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.lm: str = decoder.current_search()
        self.grammars: dict[str, str] = {}  # grammar text -> search name, so a reused decoder skips the rebuild

    def search_for(self, grammar: str | None) -> str:
        if grammar is None:
            return self.lm
        name = self.grammars.get(grammar)
        if name is None:
            name = self.grammars[grammar] = f"grammar{len(self.grammars)}"
            self.decoder.add_jsgf_string(name, grammar)
        return name


class SphinxEngine:
    """The decoders of one worker process, lent to sessions one utterance at a time."""

    def __init__(self) -> None:
        import pocketsphinx

        self._ps = pocketsphinx
        self._idle: dict[Options, list[_Decoder]] = {}
        self._used: set[Options] = set()

    def warm(self, config: Any) -> None:
        options: Options = tuple(config["options"])
        self._used.add(options)
        if not self._idle.get(options):
            self.release(options, self._load(options))

    def idle(self) -> None:
        # One spare per configuration in use, loaded while no request waits, so the next utterance's START does
        # not hold up every other session of this worker for a model load.
        for options in self._used:
            if not self._idle.get(options):
                self.release(options, self._load(options))
                return

    def open(self, config: Any) -> _SphinxSession:
        options: Options = tuple(config["options"])
        self._used.add(options)
        return _SphinxSession(self, options, config)

    def acquire(self, options: Options) -> _Decoder:
        idle = self._idle.get(options)
        return idle.pop() if idle else self._load(options)

    def release(self, options: Options, decoder: _Decoder) -> None:
        idle = self._idle.setdefault(options, [])
        if len(idle) < _MAX_IDLE_DECODERS:
            idle.append(decoder)

    def _load(self, options: Options) -> _Decoder:
        return _Decoder(self._ps.Decoder(loglevel="FATAL", **dict(options)))


class _SphinxSession:
    def __init__(self, engine: SphinxEngine, options: Options, config: Any) -> None:
        self._engine = engine
        self._options = options
        self._floor = float(config["noise_floor"])
        self._rng = np.random.default_rng(0)
        wanted = list(dict.fromkeys(p for p in map(normalize, config["phrases"]) if p))
        decoder = engine.acquire(options)
        try:
            lookup = decoder.decoder.lookup_word
            kept = [p for p in wanted if all(lookup(w) is not None for w in p.split())]
            self._fillers = {f for f in map(normalize, config["fillers"]) if f and " " not in f and lookup(f)}
            self._grammar = build_grammar(kept, sorted(self._fillers)) if kept else None
            decoder.search_for(self._grammar)  # parse now: a bad grammar fails the open, not the first utterance
        finally:
            engine.release(options, decoder)
        self.info = [p for p in wanted if p not in kept]
        self._phrases = set(kept)
        self._fallback = bool(config["fallback"]) and bool(kept)
        self._max_bytes = 2 * int(config["max_samples"])
        self._audio = bytearray()
        self._d: _Decoder | None = None  # borrowed between START and END

    def handle(self, op: str, payload: Any) -> list[tuple[str, Any]]:
        if op == "audio":
            if self._d is not None:
                payload = self._add_floor(payload)
                self._d.decoder.process_raw(payload, False, False)
                if self._fallback and len(self._audio) < self._max_bytes:
                    self._audio += payload[: self._max_bytes - len(self._audio)]
            return [("partial", self._hypothesis())]
        if op == "start":
            self._abandon()
            self._d = self._engine.acquire(self._options)
            self._d.decoder.activate_search(self._d.search_for(self._grammar))
            self._d.decoder.start_utt()
            self._audio.clear()
            return [("started", None)]
        if op == "peek":
            return [("peek", self._hypothesis())]
        if op == "end":
            return [("final", self._finish())]
        raise ValueError(f"unknown stt op {op!r}")

    def _add_floor(self, payload: bytes) -> bytes:
        # The model's filterbank reaches 6.8 kHz (feat.params: -upperf 6800, fixed by training). Telephone audio
        # upsampled from 8 kHz is empty above 4 kHz, and the log of those near-zero band energies swamps the
        # cepstra: whole words go missing. A white floor around -60 dBFS fills the empty bands; measured on espeak
        # phrases through G.711, grammar accuracy rose from 16/24 to 24/24 (and stayed 24/24 on wideband audio).
        if not self._floor:
            return payload
        noisy = np.frombuffer(payload, dtype=np.int16).astype(np.float32)
        noisy += self._rng.standard_normal(noisy.shape[0], dtype=np.float32) * self._floor
        np.clip(noisy, -32768.0, 32767.0, out=noisy)
        return noisy.astype(np.int16).tobytes()

    def _hypothesis(self) -> str:
        hyp = None if self._d is None else self._d.decoder.hyp()
        return "" if hyp is None else str(hyp.hypstr)

    def _finish(self) -> str:
        d = self._d
        if d is None:
            return ""
        ps = d.decoder
        ps.end_utt()
        text = self._hypothesis()
        try:
            if self._grammar is None:
                return text
            matched = self._match(text)
            if matched is not None or not self._fallback:
                return matched or ""
            # Out of grammar: decode the same audio again with the open-vocabulary model.
            ps.activate_search(d.lm)
            ps.start_utt()
            audio = bytes(self._audio)
            for i in range(0, len(audio), _FALLBACK_CHUNK):
                ps.process_raw(audio[i : i + _FALLBACK_CHUNK], False, False)
            ps.end_utt()
            return self._hypothesis()
        finally:
            self._d = None
            self._engine.release(self._options, d)

    def _match(self, text: str) -> str | None:
        # The grammar's best path may stop short of a final state ("what are your" for an unknown sentence): only
        # a whole phrase, with at most the allowed fillers around it, counts as recognised.
        words = text.split()
        if words and words[0] in self._fillers and " ".join(words) not in self._phrases:
            words = words[1:]
        if words and words[-1] in self._fillers and " ".join(words) not in self._phrases:
            words = words[:-1]
        phrase = " ".join(words)
        return phrase if phrase in self._phrases else None

    def _abandon(self) -> None:
        if self._d is not None:
            self._d.decoder.end_utt()
            self._engine.release(self._options, self._d)
            self._d = None

    def close(self) -> None:
        self._abandon()
