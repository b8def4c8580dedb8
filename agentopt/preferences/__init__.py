"""Preferences: the append-only SQLite ledger and its TRL-format JSONL export."""

from agentopt.preferences.ledger import (
    Ledger,
    LedgerStats,
    PreferenceLedger,
    default_ledger_path,
    load_jsonl,
    to_trl_row,
)

__all__ = ["Ledger", "LedgerStats", "PreferenceLedger", "default_ledger_path", "load_jsonl", "to_trl_row"]
