"""``agentopt tasks check``: does a task keep the promises optimisers rely on?

Like Gymnasium's ``check_env``: each check plays the task without a model and reports what
breaks, in words a task author can act on. The bundled suite passes every check (its test
suite runs them); a user's task should too before a search spends money on it.

The checks, in order (a later one is skipped when it needs what an earlier one found broken):

- ``members``: the task has every member of `TaskProtocol`;
- ``prompt``: the human-written prompt is not empty;
- ``splits``: each split gives as many instances as it declares, the same ones on every call;
- ``disjoint``: no instance is in two splits (single-turn: no question twice);
- ``same_start``: an instance always starts the same way, and ``reset`` shows ``render``;
- ``any_reply``: any text, however malformed, is a step, never an exception, and every step
  reports the ``info`` keys the rules and scores read, with a score in [0, 1];
- ``episode_ends``: a policy that always says the same unhelpful thing is stopped by a rule,
  the environment or the step limit;
- ``rules``: every rule's feedback renders;
- ``oracle``: the task's oracle, if it has one, solves every instance without a rule firing;
- ``grammar``: a declared action grammar accepts every action the oracle takes.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from agentopt.tasks.protocol import missing_members
from agentopt.types import Instance, Message

SPLITS = ("train", "validation", "test")
INFO_KEYS = ("events", "progress", "score", "success", "action", "valid", "feedback")

# Replies that have broken parsers before: empty, blank, unbalanced brackets and braces,
# JSON of the wrong shape, control characters, other scripts, a very long line.
AWKWARD_REPLIES = (
    "", " ", "\n\n", "{", "}", "[", "]]", "{}", "[]", "null", "{\"a\": }", "[1, {\"x\": [}]",
    "Answer:", "Answer: ", "\\boxed{", "\\boxed{}", "((()", "\x00\x1b[31m", "ü∑ß 日本語 🙂",
    "Move", "{Move up", "<tool_call>{}</tool_call>", "-1e309", "9" * 400, "a" * 5000,
)


class CheckResult(BaseModel):
    check: str
    ok: bool | None  # None: skipped (what it needs failed first, or the task has no oracle)
    detail: str = ""


def check_task(task: Any, *, max_instances: int | None = None, seed: int = 0) -> list[CheckResult]:
    """Every check on ``task``, in order. ``max_instances`` caps the instances per split that
    the oracle and start checks play (all by default)."""
    results: list[CheckResult] = []

    def run(name: str, check: Callable[[], str | None], needs: Iterable[str] = ()) -> None:
        broken = [r.check for r in results if r.check in set(needs) and r.ok is not True]
        if broken:
            results.append(CheckResult(check=name, ok=None, detail=f"skipped: needs {', '.join(broken)}"))
            return
        try:
            skipped = check()
        except _Broken as exc:
            results.append(CheckResult(check=name, ok=False, detail=str(exc)))
        except Exception as exc:  # noqa: BLE001 - a task's own exception is the finding
            results.append(CheckResult(check=name, ok=False, detail=f"raised {type(exc).__name__}: {exc}"))
        else:
            results.append(CheckResult(check=name, ok=None if skipped else True, detail=skipped or ""))

    def members() -> None:
        missing = missing_members(task)
        _require(not missing, f"missing {', '.join(missing)} (see agentopt.tasks.protocol.TaskProtocol)")

    def prompt() -> None:
        text = task.initial_prompt
        _require(isinstance(text, str) and text.strip() != "", "initial_prompt is empty")

    found: dict[str, list[Instance]] = {}

    def splits() -> None:
        for split in SPLITS:
            declared = getattr(task.splits, split)
            got = task.instances(split)
            _require(len(got) == declared,
                     f"{split} declares {declared} instances, instances() gave {len(got)}")
            again = task.instances(split)
            _require([i.id for i in got] == [i.id for i in again],
                     f"{split}: two calls of instances() gave different instances")
            _require(all(i.split == split and i.index == k for k, i in enumerate(got)),
                     f"{split}: instance k must have split={split!r} and index=k")
            if declared:
                first = task.instances(split, 1)
                _require(len(first) == 1 and first[0].id == got[0].id,
                         f"{split}: instances({split!r}, 1) is not the first of the split")
            found[split] = got[:max_instances] if max_instances is not None else got
        _require(sum(len(v) for v in found.values()) > 0, "every split is empty")

    def disjoint() -> None:
        everything = [inst for split in SPLITS for inst in task.instances(split)]
        if task.single_turn:
            seen: dict[str, str] = {}
            for inst in everything:
                question = task.make_env(inst).reset()[0]
                _require(question not in seen, f"{inst.id} asks the same question as {seen.get(question)}")
                seen[question] = inst.id
        else:
            seeds: dict[Any, str] = {}
            for inst in everything:
                key = (inst.seed, repr(sorted(inst.config.items())))
                _require(key not in seeds,
                         f"{inst.id} is the same instance (seed and config) as {seeds.get(key)}")
                seeds[key] = inst.id

    def same_start() -> None:
        for inst in _instances(found):
            first, second = task.make_env(inst), task.make_env(inst)
            start, _ = first.reset()
            _require(start == second.reset()[0], f"{inst.id} starts differently on two resets")
            _require(start == first.render(), f"{inst.id}: reset() returned something other than render()")

    def any_reply() -> None:
        rng = random.Random(seed)
        inst = next(iter(_instances(found)))
        replies = list(AWKWARD_REPLIES) + [_random_text(rng) for _ in range(40)]
        for reply in replies:
            env = task.make_env(inst)
            env.reset()
            try:
                outcome = env.step(reply)
            except Exception as exc:
                raise _Broken(f"step({_show(reply)}) raised {type(exc).__name__}: {exc}") from None
            _require(isinstance(outcome, tuple) and len(outcome) == 5,
                     "step() must return (observation, reward, terminated, truncated, info), "
                     f"got {outcome!r:.80}")
            info = outcome[4]
            missing = [k for k in INFO_KEYS if k not in info]
            _require(not missing, f"step({_show(reply)})'s info lacks {', '.join(missing)}")
            _require(0.0 <= float(info["score"]) <= 1.0,
                     f"step({_show(reply)}) scored {info['score']}, not in [0, 1]")

    def episode_ends() -> None:
        from agentopt.tasks.rollout import run_episode

        inst = next(iter(_instances(found)))
        limit = task.make_env(inst).max_steps
        _require(isinstance(limit, int) and limit >= 1, f"max_steps must be a positive int, got {limit!r}")
        traj = run_episode(task, inst, task.initial_prompt, lambda messages: ("I am not sure.", 0, 0))
        _require(traj.n_steps <= limit, f"an episode ran {traj.n_steps} steps past max_steps={limit}")
        _require(0.0 <= traj.score <= 1.0, f"the episode scored {traj.score}, not in [0, 1]")

    def rules() -> None:
        fields = {"response": "r", "action": "a", "env_feedback": "e", "state": "s"}
        for rule in task.rules:
            text = rule.render(**fields)
            # A one-word placeholder that is not a field is a typo; "{Move up}" is an action.
            unknown = [name for _, name, _, _ in string.Formatter().parse(rule.feedback)
                       if name and name.isidentifier() and name not in fields]
            if unknown:
                raise _Broken(f"rule {rule.name!r} names {{{unknown[0]}}}, which is left as it is "
                              "(use {response}, {action}, {env_feedback} or {state})")
            _require(text.strip() != "", f"rule {rule.name!r} has no feedback text")

    def oracle() -> str | None:
        policy_of = getattr(task, "oracle", None)
        if policy_of is None:
            return "no oracle: give the task one (oracle(env) -> str) to check it can be solved"
        from agentopt.tasks.rollout import run_episode

        for inst in _instances(found):
            traj = run_episode(task, inst, "", _shadow_policy(task, inst, policy_of))
            _require(traj.success and traj.score == 1.0,
                     f"the oracle fails {inst.id} (score {traj.score}, ended by {traj.terminated_by})")
            fired = [f.rule for f in traj.feedback]
            _require(not fired, f"the oracle solves {inst.id} but rule(s) {', '.join(map(str, fired))} fired")
        return None

    def grammar() -> str | None:
        declared = task.actions
        if declared is None:
            return "no action grammar declared"
        policy_of = getattr(task, "oracle", None)
        if policy_of is None:
            return "no oracle to take actions"
        import json

        for inst in _instances(found):
            env = task.make_env(inst)
            env.reset()
            for _ in range(env.max_steps):
                text = policy_of(env)
                if declared.regex:
                    parsed = env.parse_action(text)
                    action = env.format_action(parsed) if parsed is not None else text
                    _require(re.fullmatch(declared.regex, action) is not None,
                             f"the grammar refuses the oracle's action {action!r} on {inst.id}")
                else:
                    try:
                        json.loads(text)
                    except ValueError:
                        raise _Broken(f"the oracle's action {_show(text)} on {inst.id} is not JSON") from None
                _, _, terminated, truncated, _ = env.step(text)
                if terminated or truncated:
                    break
        return None

    run("members", members)
    run("prompt", prompt, ["members"])
    run("splits", splits, ["members"])
    run("disjoint", disjoint, ["splits"])
    run("same_start", same_start, ["splits"])
    run("any_reply", any_reply, ["splits"])
    run("episode_ends", episode_ends, ["splits"])
    run("rules", rules, ["members"])
    run("oracle", oracle, ["splits", "any_reply"])
    run("grammar", grammar, ["splits", "oracle"])
    return results


class _Broken(Exception):
    """A promise the task does not keep (the message says which)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _Broken(message)


def _instances(found: dict[str, list[Instance]]) -> list[Instance]:
    return [inst for split in SPLITS for inst in found.get(split, [])]


def _shadow_policy(
    task: Any, instance: Instance, oracle: Callable[[Any], str]
) -> Callable[[list[Message]], tuple[str, int, int]]:
    """The oracle playing on its own copy of the episode's environment (it reads the state
    from the environment, not from the messages)."""
    shadow = task.make_env(instance)
    shadow.reset()

    def policy(messages: list[Message]) -> tuple[str, int, int]:
        text = oracle(shadow)
        shadow.step(text)
        return text, 0, 0

    return policy


def _random_text(rng: random.Random) -> str:
    alphabet = string.printable + "{}[]():;\"'`\\ü日🙂\u200b"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def failures(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.ok is False]
