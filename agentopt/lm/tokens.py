"""A token count without a tokenizer, for caps and budgets that need only be roughly right.

The history an episode shows its agent and the feedback an optimiser shows its optimizer model
are cut to a number of tokens before any model sees them, and the model behind an endpoint may
have no tokenizer at hand. English text runs about four characters a token on the models
agentopt meets, which is close enough for a cap that leaves the context room to spare.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4
