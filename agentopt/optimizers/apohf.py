"""APOHF: prompt optimisation from pairwise preferences only, as a neural dueling bandit.

Lin et al., "Prompt Optimization with Human Feedback", 2024, arXiv 2405.17346 (public code:
github xqlin98/APOHF).

There are no scores, only answers to "which of these two is better?". The loop:

1. **Pool.** The optimizer model rephrases the initial prompt ``pool_size`` times (different
   sample indices, de-duplicated; the paper's "rephrase" pool). The initial prompt is arm 0.
   Every arm is embedded once (MiniLM by default; the paper used all-mpnet-base-v2).
2. **Utility model.** An MLP ``h(x)`` on the embedding (``depth`` hidden layers of ``hidden``
   ReLU units, every weight N(0, 1)) is trained with the Bradley-Terry loss
   ``BCEWithLogits(h(x1) - h(x2), y)`` on *all* preferences so far: full batch, ``train_iters``
   Adam steps at lr 1e-3, weight decay ``lamdba / (n_pairs + 50)``, and **re-started from the
   same initial weights every round** (so the fit depends on the data, not on the order it came).
3. **Pair.** The first ``n_init`` pairs are uniformly random. Then the first arm is greedy,
   ``x1 = argmax mu``, and the second maximises ``mu(x) + sigma(x)`` with
   ``sigma(x) = sqrt(nu * sum_j (g_j(x) - g_j(x1))^2 / U_j)``: ``g = grad_theta h(x)`` at the
   current weights (per-sample gradients by ``torch.func.vmap(grad)``) and
   ``U = diag(sum_s f_s f_s^T) + lamdba``, ``f_s = g(x_s1) - g(x_s2)`` over every past pair
   (recomputed at the current weights). ``nu`` sits inside the square root, as in the code.
4. **Ask.** Each prompt of the pair produces its response (for task prompts: the agent plays one
   train instance, round-robin, with each prompt); the preference source says which is better;
   the preference goes to the ledger.
5. **Report.** From the ``n_init``-th answer on, the network is re-fitted after every answer and
   the reported prompt is the argmax of ``mu`` over the prompts *queried so far* (not the whole
   pool); before that, the winner of the latest duel. The result is the prompt reported in the
   last round.

``pair_selection="random"`` is the paper's Random baseline: uniformly random pairs, reporting
the winner of the latest duel. The response-optimisation variant (`Apohf.optimize_responses`)
runs the same bandit over sampled responses to fixed user prompts, visited round-robin, one
shared network, selection restricted to the current user prompt's responses.

Ties (a judge or a person may give one) enter the loss with target 0.5; skips are dropped. The
paper's feedback is always binary, so with a simulated user neither happens.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import AliasChoices, BaseModel, Field, computed_field
from torch import nn
from torch.func import functional_call, grad, vmap

from agentopt.errors import BudgetExceeded, UserError
from agentopt.lm.client import LM
from agentopt.optimizers.prompt_text import clean_prompt, dedupe_key
from agentopt.preferences.sources import PreferenceSource, Shown, SimulatedUser, StopFeedback, Verdict
from agentopt.prompts import render_prompt
from agentopt.rng import private_torch_rng
from agentopt.types import Instance, Preference, Prompt

if TYPE_CHECKING:
    from agentopt.optimizers.base import OptimizationResult, RunContext
    from agentopt.optimizers.embeddings import Embedder
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.tasks.loader import Task
    from agentopt.tasks.rollout import Agent
    from agentopt.types import Trajectory

PairSelection = Literal["apohf", "random"]
EventHook = Callable[[str, dict[str, Any]], None]
_MIN_PROMPT_CHARS = 10


class ApohfConfig(BaseModel):
    """Hyperparameters; defaults are the public code's (``run_dbandits_po.sh``)."""

    pool_size: int = Field(default=200, ge=2, description="candidate prompts (responses per user prompt)")
    n_init: int = Field(default=5, ge=0, description="random pairs before the bandit starts choosing")
    rounds: int = Field(default=150, ge=1, description="preference queries in total, n_init included")
    nu: float = Field(default=1.0, ge=0, description="exploration weight, inside the square root")
    # The public code spells it "lamdba"; "lambda" and "lambda_" are accepted too.
    lamdba: float = Field(default=0.1, gt=0, validation_alias=AliasChoices("lamdba", "lambda_", "lambda"))
    hidden: int = Field(default=32, ge=1)
    depth: int = Field(default=2, ge=1, description="hidden layers")
    train_iters: int = Field(default=1000, ge=1, description="full-batch Adam steps per fit")
    lr: float = Field(default=1e-3, gt=0)
    seed: int = Field(default=0, description="random pairs (and nothing else)")
    net_seed: int = Field(default=0, description="the network's one initialisation (0 in the paper)")
    pair_selection: PairSelection = "apohf"
    temperature: float = Field(default=1.0, ge=0, description="sampling the pool")
    max_tokens: int = Field(default=512, ge=16)
    pool_attempts: int = Field(
        default=3, ge=1, description="sampling passes to fill the pool past duplicates"
    )
    embedding: Literal["minilm", "hashing"] = Field(
        default="minilm", description="sentence embedding of the arms, unless an embedder is passed in"
    )

    model_config = {"populate_by_name": True}


# --- the utility model and the bandit --------------------------------------------------------
class UtilityNetwork(nn.Module):
    """``h(x)``: Linear(d, hidden) -> ReLU -> [Linear(hidden, hidden) -> ReLU] * (depth - 1) ->
    Linear(hidden, 1), every weight and bias drawn from N(0, 1) as in the paper's code."""

    def __init__(self, input_dim: int, hidden: int = 32, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)
        for parameter in self.parameters():
            nn.init.normal_(parameter, mean=0.0, std=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(-1)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread for the duration. The network is tiny (~10^4 parameters), so
    intra-op threads cost more in synchronisation than they save: measured on 2 cores, a fit
    was 14x faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def adam(params: Any, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's Adam (L2 weight decay added to the gradient, as the paper's code uses), fused
    into one kernel where this torch build offers it: ~1.5x faster for a network this small."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@dataclass
class Pair:
    first: int
    second: int
    target: float  # 1.0: first won, 0.0: second won, 0.5: tie


class DuelingBandit:
    """The neural dueling bandit over a fixed set of arms (their embedding rows)."""

    def __init__(self, features: np.ndarray, config: ApohfConfig) -> None:
        self.config = config
        self.x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        with private_torch_rng(config.net_seed):
            self.net = UtilityNetwork(self.x.shape[1], config.hidden, config.depth)
        # Every fit restarts from these weights (the paper re-loads its saved initial state).
        self.init_state = {k: v.clone() for k, v in self.net.state_dict().items()}
        self.pairs: list[Pair] = []
        self.fitted = False

    @property
    def n_arms(self) -> int:
        return int(self.x.shape[0])

    def add(self, first: int, second: int, verdict: Verdict) -> None:
        target = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(verdict)
        if target is not None:  # a skip carries no information
            self.pairs.append(Pair(first, second, target))
            self.fitted = False

    def weight_decay(self) -> float:
        return self.config.lamdba / (len(self.pairs) + 50)

    def fit(self) -> float:
        """Train from the initial weights on every pair so far; returns the final loss."""
        self.net.load_state_dict(self.init_state)
        if not self.pairs:
            self.fitted = True
            return 0.0
        first = torch.tensor([p.first for p in self.pairs])
        second = torch.tensor([p.second for p in self.pairs])
        target = torch.tensor([p.target for p in self.pairs], dtype=torch.float32)
        optimizer = adam(self.net.parameters(), lr=self.config.lr, weight_decay=self.weight_decay())
        loss_fn = nn.BCEWithLogitsLoss()
        loss = torch.zeros(())
        self.net.train()
        with single_thread():
            for _ in range(self.config.train_iters):
                optimizer.zero_grad()
                h = self.net(self.x)  # all arms at once: the pool is small, and indexing is free
                loss = loss_fn(h[first] - h[second], target)
                loss.backward()
                optimizer.step()
        self.fitted = True
        return float(loss.detach())

    def ensure_fitted(self) -> None:
        if not self.fitted:
            self.fit()

    @torch.no_grad()
    def utilities(self) -> torch.Tensor:
        """mu(x) for every arm at the current weights."""
        with single_thread():
            return self.net(self.x)

    def gradients(self) -> torch.Tensor:
        """g(x) = grad_theta h(x; theta) for every arm, one row each (n_arms x n_params)."""
        params = {name: p.detach() for name, p in self.net.named_parameters()}

        def h(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.net, p, (x.unsqueeze(0),)).squeeze()

        with single_thread():
            per_arm = vmap(grad(h), in_dims=(None, 0))(params, self.x)
        return torch.cat([per_arm[name].reshape(self.n_arms, -1) for name in params], dim=1)

    def exploration(self, first: int, g: torch.Tensor | None = None) -> torch.Tensor:
        """sigma(x) relative to the first arm, for every arm (0 for the first arm itself)."""
        g = self.gradients() if g is None else g
        if self.pairs:
            i = torch.tensor([p.first for p in self.pairs])
            j = torch.tensor([p.second for p in self.pairs])
            u = ((g[i] - g[j]) ** 2).sum(0) + self.config.lamdba
        else:
            u = torch.full((g.shape[1],), self.config.lamdba)
        # The diagonal of V = sum f f^T + lamdba I, computed directly rather than building V
        # (the public code's dense V is n_params^2 floats, ~2.6 GB at 768-d input).
        return torch.sqrt(self.config.nu * (((g - g[first]) ** 2) / u).sum(1))

    def select(self, domain: Sequence[int]) -> tuple[int, int, dict[str, float]]:
        """(greedy arm, UCB arm) within ``domain``; the info says why."""
        self.ensure_fitted()
        mu = self.utilities()
        idx = torch.as_tensor(list(domain))
        first = int(idx[torch.argmax(mu[idx])])
        with torch.no_grad(), single_thread():
            sigma = self.exploration(first)
        score = mu + sigma
        candidates = idx[idx != first]
        second = int(candidates[torch.argmax(score[candidates])])
        return (
            first,
            second,
            {
                "mu_first": float(mu[first]),
                "mu_second": float(mu[second]),
                "bonus_second": float(sigma[second]),
            },
        )

    def queried(self, domain: Sequence[int] | None = None) -> list[int]:
        arms = dict.fromkeys(a for p in self.pairs for a in (p.first, p.second))
        allowed = set(domain) if domain is not None else None
        return [a for a in arms if allowed is None or a in allowed]

    def best_queried(self, domain: Sequence[int] | None = None) -> int | None:
        """argmax mu over the arms that have been in a pair (the paper's ``find_best``)."""
        arms = self.queried(domain)
        if not arms:
            return None
        self.ensure_fitted()
        mu = self.utilities()
        return max(arms, key=lambda a: (float(mu[a]), -a))


# --- what each round records, and the result -------------------------------------------------
class RoundRecord(BaseModel):
    round: int
    group: int = Field(0, description="which user prompt (response variant); 0 for prompts")
    pair: tuple[int, int]
    pair_ids: tuple[str, str]
    selected_by: Literal["init", "ucb", "random"]
    verdict: Verdict
    winner: int | None = None
    reported: int
    reported_id: str
    latent: float | None = Field(None, description="the simulated user's score of the reported arm")
    instance: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)


class ApohfResult(BaseModel):
    variant: Literal["prompt", "response"]
    pair_selection: PairSelection
    source: str
    task: str | None = None
    arms: list[Prompt]
    groups: list[int]
    contexts: list[str] = Field(default_factory=list, description="user prompts (response variant)")
    best_prompt: Prompt = Field(description="the arm reported in the last round")
    best_index: int
    best_by_group: dict[int, int] = Field(default_factory=dict)
    history: list[RoundRecord] = Field(default_factory=list)
    stopped_by: Literal["rounds", "quit", "budget"] = "rounds"
    ledger_added: int = 0
    config: ApohfConfig

    @computed_field  # type: ignore[prop-decorator]
    @property
    def queries(self) -> int:
        return len(self.history)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdicts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.history:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    @property
    def latent_by_round(self) -> list[float | None]:
        return [r.latent for r in self.history]


@dataclass
class Asked:
    """What one comparison produced, for the history and the ledger."""

    verdict: Verdict
    context: str
    first: Shown
    second: Shown
    metadata: dict[str, Any] = field(default_factory=dict)
    show_in_ledger: bool = True


Ask = Callable[[int, int, int], Asked]


# --- the optimiser -----------------------------------------------------------------------------
class Apohf:
    """APOHF (see the module docstring). Construct with hyperparameters, then call
    `optimize_prompts` (task prompts), `optimize_responses` (responses) or `optimize` (the
    shared `agentopt optimize` / `bench` entry, with a simulated user)."""

    name = "apohf"

    def __init__(
        self, config: ApohfConfig | None = None, *, embedder: Embedder | None = None, **overrides: Any
    ) -> None:
        from agentopt.optimizers.base import configure

        self.config = configure(ApohfConfig, config, overrides)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from agentopt.optimizers.embeddings import HashingEmbedder, default_embedder

            self._embedder = HashingEmbedder() if self.config.embedding == "hashing" else default_embedder()
        return self._embedder

    # --- task prompts --------------------------------------------------------------------
    def optimize_prompts(
        self,
        task: Task,
        agent: Agent,
        source: PreferenceSource,
        *,
        optimizer_lm: LM | None = None,
        initial_prompt: str | None = None,
        pool: Sequence[Prompt | str] | None = None,
        instances: Sequence[Instance] | None = None,
        ledger: PreferenceLedger | None = None,
        on_event: EventHook | None = None,
    ) -> ApohfResult:
        """Find the prompt the source prefers. Each comparison plays one train instance
        (round-robin) with both prompts and shows the two episodes."""
        emit = on_event or (lambda kind, data: None)
        if pool is None:
            if optimizer_lm is None:
                raise UserError("APOHF needs an optimizer model to generate its candidate pool")
            emit("pool_start", {"size": self.config.pool_size})
            pool = generate_pool(initial_prompt or task.initial_prompt, optimizer_lm, self.config)
        arms = [p if isinstance(p, Prompt) else Prompt(text=p) for p in pool]
        emit("pool", {"size": len(arms)})
        instances = list(instances) if instances is not None else task.instances("train")
        if not instances:
            raise UserError(f"task {task.name!r} has no train instances to compare prompts on")
        contexts: dict[str, str] = {}

        def ask(round_: int, i: int, j: int) -> Asked:
            instance = instances[(round_ - 1) % len(instances)]
            if instance.id not in contexts:
                contexts[instance.id] = task_context(task, instance)
            context = contexts[instance.id]
            first, second, scores = self._show_prompts(agent, instance, arms[i], arms[j], source)
            verdict = source.compare(context, first, second)
            meta = {"instance": instance.id, **({"episode_scores": scores} if scores else {})}
            return Asked(verdict, context, first, second, meta, show_in_ledger=source.needs_responses)

        return self._run(
            arms,
            [0] * len(arms),
            [a.text for a in arms],
            ask,
            source,
            "prompt",
            ledger=ledger,
            task=task.name,
            emit=emit,
        )

    @staticmethod
    def _show_prompts(
        agent: Agent, instance: Instance, a: Prompt, b: Prompt, source: PreferenceSource
    ) -> tuple[Shown, Shown, list[float]]:
        if not source.needs_responses:  # a latent-score user judges the prompts themselves
            return (
                Shown(text=a.text, key=a.text, title=f"prompt {a.id}"),
                Shown(text=b.text, key=b.text, title=f"prompt {b.id}"),
                [],
            )
        from agentopt.preferences.sources import render_trajectory
        from agentopt.tasks.rollout import call_agent

        with ThreadPoolExecutor(max_workers=2) as threads:
            runs: list[Trajectory] = list(threads.map(lambda p: call_agent(agent, p.text, instance),
                                                      (a, b)))
        shown = [
            Shown(text=render_trajectory(t), key=p.text, title=f"prompt {p.id}")
            for p, t in zip((a, b), runs, strict=True)
        ]
        return shown[0], shown[1], [t.score for t in runs]

    # --- bare arms -----------------------------------------------------------------------
    def optimize_arms(
        self,
        arms: Sequence[Prompt | str],
        source: PreferenceSource,
        *,
        context: str = "",
        ledger: PreferenceLedger | None = None,
        task: str | None = None,
        on_event: EventHook | None = None,
    ) -> ApohfResult:
        """The bandit alone: each arm is shown to the source as it is (no rollouts, no
        sampling), e.g. prompts judged directly by a simulated user."""
        prompts = [a if isinstance(a, Prompt) else Prompt(text=a) for a in arms]

        def ask(round_: int, i: int, j: int) -> Asked:
            first, second = (
                Shown(text=prompts[i].text, key=prompts[i].text),
                Shown(text=prompts[j].text, key=prompts[j].text),
            )
            return Asked(source.compare(context, first, second), context, first, second)

        return self._run(
            prompts,
            [0] * len(prompts),
            [p.text for p in prompts],
            ask,
            source,
            "prompt",
            ledger=ledger,
            task=task,
            emit=on_event or (lambda kind, data: None),
        )

    # --- responses -----------------------------------------------------------------------
    def optimize_responses(
        self,
        user_prompts: Sequence[str],
        source: PreferenceSource,
        *,
        lm: LM | None = None,
        responses: Sequence[Sequence[str]] | None = None,
        ledger: PreferenceLedger | None = None,
        task: str | None = None,
        on_event: EventHook | None = None,
    ) -> ApohfResult:
        """The response-optimisation variant: arms are ``pool_size`` sampled responses per user
        prompt (embedded as prompt + response, as in the paper); user prompts are visited
        round-robin, one pair per round, with one network shared by all of them."""
        emit = on_event or (lambda kind, data: None)
        if not user_prompts:
            raise UserError("response optimisation needs at least one user prompt")
        if responses is None:
            if lm is None:
                raise UserError("response optimisation needs a model to sample responses from")
            responses = [generate_responses(u, lm, self.config) for u in user_prompts]
        if len(responses) != len(user_prompts):
            raise UserError("give one list of responses per user prompt")
        arms: list[Prompt] = []
        groups: list[int] = []
        embed_texts: list[str] = []
        for g, (user, options) in enumerate(zip(user_prompts, responses, strict=True)):
            if len(options) < 2:
                raise UserError(f"user prompt {g} has {len(options)} distinct response(s); need 2 or more")
            for text in options:
                arms.append(Prompt(text=text, parents=(Prompt(text=user).id,), operator="sample"))
                groups.append(g)
                embed_texts.append(f"{user}\n{text}")
        emit("pool", {"size": len(arms), "groups": len(user_prompts)})

        def ask(round_: int, i: int, j: int) -> Asked:
            context = user_prompts[groups[i]]
            first, second = (
                Shown(text=arms[i].text, key=arms[i].text),
                Shown(text=arms[j].text, key=arms[j].text),
            )
            return Asked(source.compare(context, first, second), context, first, second)

        return self._run(
            arms,
            groups,
            embed_texts,
            ask,
            source,
            "response",
            ledger=ledger,
            task=task,
            emit=emit,
            contexts=list(user_prompts),
        )

    # --- the shared bandit loop ----------------------------------------------------------
    def _run(
        self,
        arms: list[Prompt],
        groups: list[int],
        embed_texts: list[str],
        ask: Ask,
        source: PreferenceSource,
        variant: Literal["prompt", "response"],
        *,
        ledger: PreferenceLedger | None,
        task: str | None,
        emit: EventHook,
        contexts: list[str] | None = None,
    ) -> ApohfResult:
        cfg = self.config
        if len(arms) < 2:
            raise UserError(f"APOHF needs at least 2 candidates, the pool has {len(arms)}")
        bandit = DuelingBandit(self.embedder.encode(embed_texts), cfg)
        rng = random.Random(cfg.seed)
        n_groups = max(groups) + 1
        domains = [[a for a, g in enumerate(groups) if g == k] for k in range(n_groups)]
        reported = {k: domains[k][0] for k in range(n_groups)}  # before any answer: the first arm
        history: list[RoundRecord] = []
        added = 0
        stopped_by: Literal["rounds", "quit", "budget"] = "rounds"
        try:
            source.prepare([a.text for a in arms])  # a simulated user scores its reference set
        except BudgetExceeded:
            stopped_by = "budget"
        for round_ in range(1, cfg.rounds + 1 if stopped_by == "rounds" else 1):
            group = (round_ - 1) % n_groups
            domain = domains[group]
            i, j, selected_by, info = self._pick(bandit, domain, round_, rng)
            emit("asking", {"round": round_, "pair": (i, j)})
            try:
                asked = ask(round_, i, j)
            except StopFeedback:
                stopped_by = "quit"
                break
            except BudgetExceeded:
                stopped_by = "budget"
                break
            bandit.add(i, j, asked.verdict)
            if asked.verdict in ("a", "b") and ledger is not None:
                added += ledger.add(self._preference(asked, arms, i, j, round_, source, task))
            reported[group] = self._report(bandit, domain, i, j, asked.verdict, reported[group], round_)
            try:
                latent = source.latent(arms[reported[group]].text)
            except BudgetExceeded:
                latent, stopped_by = None, "budget"
            record = RoundRecord(
                round=round_,
                group=group,
                pair=(i, j),
                pair_ids=(arms[i].id, arms[j].id),
                selected_by=selected_by,
                verdict=asked.verdict,
                winner={"a": i, "b": j}.get(asked.verdict),
                reported=reported[group],
                reported_id=arms[reported[group]].id,
                latent=latent,
                instance=asked.metadata.get("instance"),
                info={**info, **asked.metadata},
            )
            history.append(record)
            emit("round", record.model_dump(mode="json"))
            if stopped_by == "budget":
                break
        final_group = history[-1].group if history else 0
        best = reported[final_group]
        return ApohfResult(
            variant=variant,
            pair_selection=cfg.pair_selection,
            source=source.name,
            task=task,
            arms=arms,
            groups=groups,
            contexts=contexts or [],
            best_prompt=arms[best],
            best_index=best,
            best_by_group=reported,
            history=history,
            stopped_by=stopped_by,
            ledger_added=added,
            config=cfg,
        )

    def _pick(
        self, bandit: DuelingBandit, domain: list[int], round_: int, rng: random.Random
    ) -> tuple[int, int, Literal["init", "ucb", "random"], dict[str, float]]:
        if self.config.pair_selection == "random":
            i, j = rng.sample(domain, 2)
            return i, j, "random", {}
        if round_ <= self.config.n_init or not bandit.pairs:
            i, j = rng.sample(domain, 2)
            return i, j, "init", {}
        i, j, info = bandit.select(domain)
        return i, j, "ucb", info

    def _report(
        self,
        bandit: DuelingBandit,
        domain: list[int],
        i: int,
        j: int,
        verdict: Verdict,
        previous: int,
        round_: int,
    ) -> int:
        if self.config.pair_selection == "random" or round_ < self.config.n_init:
            # The paper's Random baseline reports the winner of the current duel; so does APOHF
            # during its first random pairs, since the network is first fitted after n_init.
            return {"a": i, "b": j}.get(verdict, previous)
        bandit.ensure_fitted()  # re-fit on every answer so far, then argmax mu over queried arms
        best = bandit.best_queried(domain)
        return previous if best is None else best

    def _preference(
        self,
        asked: Asked,
        arms: list[Prompt],
        i: int,
        j: int,
        round_: int,
        source: PreferenceSource,
        task: str | None,
    ) -> Preference:
        winner, loser = (asked.first, asked.second) if asked.verdict == "a" else (asked.second, asked.first)
        w, lo = (i, j) if asked.verdict == "a" else (j, i)
        metadata: dict[str, Any] = {
            "method": "apohf",
            "pair_selection": self.config.pair_selection,
            "round": round_,
            "seed": self.config.seed,
            "arms": {"chosen": arms[w].id, "rejected": arms[lo].id},
            **asked.metadata,
        }
        if asked.show_in_ledger and winner.text != winner.key:
            metadata["shown"] = {"chosen": winner.text, "rejected": loser.text}
        return Preference(
            context=asked.context,
            chosen=winner.key,
            rejected=loser.key,
            source=source.name,
            task=task,
            metadata=metadata,
            kind="response" if arms[w].operator == "sample" else "prompt",  # optimize_responses' arms
        )

    # --- `agentopt optimize` / `bench` ----------------------------------------------------
    def optimize(self, ctx: RunContext) -> OptimizationResult:
        """APOHF inside the shared run harness, with the paper's simulated user: the latent
        score of a prompt is its train objective (``ctx.score``). The prompt reported in the
        last round is scored on validation and test beside the human prompt; the history
        holds, per round, that reported prompt's latent score and its running best."""
        from agentopt.optimizers.base import HistoryPoint

        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        texts = [human.text]
        seen = {dedupe_key(human.text)}
        message = render_prompt("apohf/rephrase", prompt=human.text)
        for k in range(cfg.pool_size * cfg.pool_attempts):
            if len(texts) >= cfg.pool_size:
                break
            try:
                reply = ctx.ask_optimizer(
                    f"apohf/pool/{k}",
                    [{"role": "user", "content": message}],
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                    sample=k,
                )
            except BudgetExceeded:
                break
            _accept(clean_prompt(reply), texts, seen)
        pool = [human] + [Prompt(text=t, parents=(human.id,), operator="rephrase") for t in texts[1:]]
        by_text = {p.text: p for p in pool}
        for p in pool[1:]:
            ctx.add_candidate(p)

        def oracle(text: str) -> float:
            # The simulated person answers by running the prompts, and those episodes are calls
            # like any other method's scoring: they are charged to the run's budget, so equal
            # budgets in a comparison mean equal calls.
            return ctx.score(by_text[text]).objective

        user = SimulatedUser(oracle, seed=ctx.seed)
        calls: list[int] = []

        def on_round(kind: str, data: dict[str, Any]) -> None:
            if kind == "round":
                calls.append(ctx.meter.calls)
                ctx.on_event(
                    "round", {"round": data["round"], "best": data["latent"] or 0.0, "calls": ctx.meter.calls}
                )

        result = self.optimize_prompts(
            ctx.task, ctx.agent, user, pool=pool, instances=ctx.instances["train"], on_event=on_round
        )
        history: list[HistoryPoint] = []
        best_so_far = float("-inf")
        for record, n_calls in zip(result.history, calls, strict=True):
            best_so_far = max(best_so_far, record.latent or 0.0)
            history.append(
                HistoryPoint(
                    calls=n_calls,
                    prompt_id=record.reported_id,
                    score=record.latent or 0.0,
                    best_so_far=best_so_far,
                    round=record.round,
                )
            )
        # The reported prompt's latent score may need its train episodes (a run stopped by the
        # budget before it was compared): they are reporting, outside the search budget.
        ctx.end_search()
        best = result.best_prompt
        return ctx.finish(
            self.name,
            human,
            result.stopped_by,
            [r.model_dump(mode="json") for r in result.history],
            chosen=best,
            best_train=user.latent(best.text),
            history=history,
            n_candidates=len(pool),
        )


# --- pools -----------------------------------------------------------------------------------
def _accept(text: str, kept: list[str], seen: set[str], min_chars: int = _MIN_PROMPT_CHARS) -> bool:
    key = dedupe_key(text)
    if len(key) < min_chars or key in seen:
        return False
    seen.add(key)
    kept.append(text)
    return True


def _sample_distinct(
    lm: LM,
    messages: list[dict[str, str]],
    config: ApohfConfig,
    want: int,
    kept: list[str],
    seen: set[str],
    min_chars: int,
    clean: Callable[[str], str],
) -> None:
    """Sample with fresh sample indices until ``kept`` has ``want`` items or the attempts run out."""
    next_sample = 0
    for _ in range(config.pool_attempts):
        need = want - len(kept)
        if need <= 0:
            return
        samples = list(range(next_sample, next_sample + need))
        next_sample += need
        replies = lm.batch(
            [messages] * need, samples=samples, temperature=config.temperature, max_tokens=config.max_tokens
        )
        for reply in replies:
            _accept(clean(reply.text), kept, seen, min_chars)


def generate_pool(initial_prompt: str, lm: LM, config: ApohfConfig | None = None) -> list[Prompt]:
    """The candidate pool: the initial prompt, then distinct rephrasings of it (the paper's
    "rephrase" pool), up to ``pool_size`` in all."""
    config = config or ApohfConfig()
    human = Prompt(text=initial_prompt.strip())
    kept = [human.text]
    seen = {dedupe_key(human.text)}
    message = [{"role": "user", "content": render_prompt("apohf/rephrase", prompt=human.text)}]
    _sample_distinct(lm, message, config, config.pool_size, kept, seen, _MIN_PROMPT_CHARS, clean_prompt)
    return [human] + [Prompt(text=t, parents=(human.id,), operator="rephrase") for t in kept[1:]]


def generate_responses(user_prompt: str, lm: LM, config: ApohfConfig | None = None) -> list[str]:
    """``pool_size`` distinct sampled responses to one user prompt (the response variant's arms)."""
    config = config or ApohfConfig()
    kept: list[str] = []
    seen: set[str] = set()
    _sample_distinct(
        lm, [{"role": "user", "content": user_prompt}], config, config.pool_size, kept, seen, 1, str.strip
    )
    return kept


def task_context(task: Task, instance: Instance) -> str:
    """What a comparison on ``instance`` is about: the task and the state an episode starts from."""
    observation, _ = task.make_env(instance).reset()
    header = getattr(task, "description", "") or task.name
    return f"Task: {header}\n\nInitial state:\n{observation}"


__all__ = [
    "Apohf",
    "ApohfConfig",
    "ApohfResult",
    "DuelingBandit",
    "RoundRecord",
    "UtilityNetwork",
    "generate_pool",
    "generate_responses",
    "task_context",
]
