"""Running optimisers: one run from a `RunConfig` to a run directory (`optimize`), many runs
compared on held-out instances (`bench`), and reading results back (`report`).

This is the top of the flow: it builds the models, task, budget and `RunContext` that an
optimiser works with. What optimisers themselves use to keep state is in `agentopt.store`.
"""
