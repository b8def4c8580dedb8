"""Preferences: the append-only SQLite ledger and its TRL-format JSONL export (`ledger`), where
pairwise preferences come from (`sources`: a simulated user, an LLM judge) and a person at the
terminal as one more source (`terminal`)."""

from agentopt.preferences.ledger import (
    Ledger,
    LedgerStats,
    PreferenceLedger,
    add_preferences,
    default_ledger_path,
    load_jsonl,
    to_trl_row,
)

__all__ = ["Ledger", "LedgerStats", "PreferenceLedger", "add_preferences", "default_ledger_path",
           "load_jsonl", "to_trl_row"]
