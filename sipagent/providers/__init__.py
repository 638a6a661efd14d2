"""Speech providers behind narrow streaming Protocols: cloud clients and the offline default."""
