"""Tasks: what an agent is scored on.

- `protocol`: `TaskProtocol`, the members agentopt uses (a task is anything that has them);
- `env`: `TextEnv`, the step-by-step environment one instance is played in;
- `parsing`: reading actions out of model replies and writing them back, shared by the bundled
  tasks (`read_orders`, `BoxMoves`, `last_phrase`);
- `actions`: action grammars for constrained decoding (``[actions]`` in task.toml);
- `rules`: `Rule` and `RuleMonitor`, the human-designed feedback rules checked after each step;
- `loader`: `Task`, loading task folders, and `load_task` / `list_tasks` (every source by name);
- `define`: tasks built in code (`dataset_task`, `env_task`);
- `registry`: `register_task` and the ``agentopt.tasks`` entry-point group;
- `check`: ``agentopt tasks check``, the promises a task must keep;
- `dataset`, `metrics`: single-turn tasks from examples, and how their answers are scored;
- `rollout`, `evaluate`: playing agents on instances and scoring a prompt on a split.
"""
