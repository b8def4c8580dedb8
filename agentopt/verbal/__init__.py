"""Learning from verbal feedback, in words rather than scores.

- `reflexion`: Reflexion (Shinn et al. 2023), an agent wrapper that retries an instance with the
  lessons it wrote about its own failed trials (`ReflexionAgent`, `Reflexion.run`); registered
  as the method ``reflexion`` so ``agentopt bench`` compares it with the prompt optimisers;
- `c3po`: C3PO (Stephan et al. 2024), which turns one sentence of verbal feedback into
  preference pairs that apply it in scope and nowhere else (`run_c3po`).

Both write the preference pairs they produce to the ledger (`agentopt.preferences`).
"""

from __future__ import annotations

from agentopt.lazy import lazy_exports

_EXPORTS = {
    "Reflexion": "agentopt.verbal.reflexion",
    "ReflexionAgent": "agentopt.verbal.reflexion",
    "ReflexionConfig": "agentopt.verbal.reflexion",
    "ReflexionResult": "agentopt.verbal.reflexion",
    "C3POConfig": "agentopt.verbal.c3po",
    "C3PODataset": "agentopt.verbal.c3po",
    "C3POResult": "agentopt.verbal.c3po",
    "VerbalFeedback": "agentopt.verbal.c3po",
    "run_c3po": "agentopt.verbal.c3po",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
