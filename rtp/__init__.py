"""rtp: the media plane (RFC 3550 RTP/RTCP, G.711, resampling, jitter buffer, pacing, captures).

Everything here is sans-I/O except :mod:`rtp.transport`, and nothing here imports ``sipagent``.
"""
