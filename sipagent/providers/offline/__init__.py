"""Offline speech engines (pocketsphinx, espeak-ng, optional piper) run in worker processes."""
