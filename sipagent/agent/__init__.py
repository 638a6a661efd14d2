"""The voice agent: VAD, turn-taking, pipeline."""
