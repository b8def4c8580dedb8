"""A run's durable state: its directory (`rundir`) and its append-only event journal
(`journal`), which memoises every step so a resumed run replays instead of paying again.

Optimisers write through these; `agentopt.runs` (which runs optimisers) sits above them.
"""
