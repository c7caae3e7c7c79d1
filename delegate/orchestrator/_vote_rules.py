"""When adaptive votes stop: how likely the leading answer is to win (`AdaptiveVotes.rule`).

Both rules read the tally so far — how many samples gave each distinct answer, the leader first —
and return a probability that `delegate.orchestrator.checks` compares with the vote's
`confidence`. Neither draws random numbers: both are exact finite sums, of at most
(`max_samples` / 2)² terms per distinct rival count for "cannot_lose" — tens of microseconds at
`max_samples=10`, about a millisecond at the cap of 100.

- "cannot_lose" (`cannot_lose`): the chance that the leader is still strictly ahead of every
  other answer once the samples left (`max_samples` minus those asked) are drawn: that the vote
  of all `max_samples` would give the same answer. Each answer seen `c` times weighs `c + 1/2`
  (Jeffreys' prior), and answers not seen yet weigh 1 between them (taken as one answer, which is
  pessimistic: they would split); the samples left follow the Pólya urn of these weights (the
  Dirichlet-multinomial posterior predictive). For the leader (weight `a`) against one rival
  (weight `b`), `m` of the `r` samples left go to the pair, `m ~ BetaBinomial(r, a + b, rest)`,
  and the rival takes `k ~ BetaBinomial(m, b, a)` of them; it catches up when its count plus `k`
  reaches the leader's plus `m - k` (a tie counts as lost). The chances of each rival catching up
  are added: exact for a unanimous vote (whose only rival is an answer not seen yet), a lower
  bound on winning otherwise. A leader more than `r` ahead of the runner-up cannot lose: 1.0.
- "beta" (`beta`): the Beta stopping rule of Adaptive-Consistency (Aggarwal et al., EMNLP
  2023), P(p_leader > p_runner-up) under Beta(a + 1, b + 1), which ignores how many samples are
  left: at confidence 0.95 a unanimous vote stops at its fourth sample, whatever the cap (but
  for a certain win, which either rule stops at).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Literal, TypeAlias

__all__ = ["VoteRule", "beta", "cannot_lose", "leader_chance"]

VoteRule: TypeAlias = Literal["cannot_lose", "beta"]

SEEN_PRIOR = 0.5
"""What each answer seen weighs beyond its count (Jeffreys' prior)."""

UNSEEN_WEIGHT = 1.0
"""What the answers not seen yet weigh between them."""


def leader_chance(rule: VoteRule, counts: Sequence[int], left: int) -> float:
    """The chance, under `rule`, that the leading answer wins.

    Args:
        rule: "cannot_lose" or "beta" (see the module's docstring).
        counts: how many samples gave each distinct answer, most first (at least one answer).
        left: samples that may still be asked (`max_samples` minus those asked).

    Returns:
        1.0 under either rule when the leader is more than `left` samples ahead of the
        runner-up (it cannot lose); else the rule's probability.
    """
    second = counts[1] if len(counts) > 1 else 0
    if counts[0] > second + left:
        return 1.0  # even every sample left going to the runner-up would leave it behind
    if rule == "beta":
        return beta(counts[0], second)
    return cannot_lose(counts, left)


def beta(lead: int, second: int) -> float:
    """P(p_lead > p_second) with `lead` and `second` votes: P(X > 1/2) for X ~ Beta(lead + 1,
    second + 1), which for whole counts is exactly P(Binomial(lead + second + 1, 1/2) ≤ lead)."""
    n = lead + second + 1
    return sum(math.comb(n, k) for k in range(lead + 1)) / (1 << n)


def cannot_lose(counts: Sequence[int], left: int) -> float:
    """The chance that the leader (`counts[0]`) is strictly ahead of every other answer once
    `left` more samples are drawn (see the module's docstring)."""
    lead, rivals = counts[0], counts[1:]
    if lead > (rivals[0] if rivals else 0) + left:
        return 1.0  # even every sample left going to the runner-up would leave it behind
    a = lead + SEEN_PRIOR
    others = math.fsum(count + SEEN_PRIOR for count in rivals)
    lost = 0.0
    # Rivals with the same count have the same chance: each count is worked out once.
    for count, times in Counter(rivals).items():
        b = count + SEEN_PRIOR
        lost += times * _catch_up(lead, a, count, b, others - b + UNSEEN_WEIGHT, left)
    lost += _catch_up(lead, a, 0, UNSEEN_WEIGHT, others, left)  # an answer not seen yet
    return max(0.0, 1.0 - lost)


def _catch_up(lead: int, a: float, count: int, b: float, rest: float, left: int) -> float:
    """P(a rival with `count` samples and urn weight `b` ends level with or ahead of the leader
    with `lead` samples and weight `a`, after `left` draws; `rest` is every other weight)."""
    gap = lead - count
    if gap > left:
        return 0.0
    rival = _beta_binomial(left, b, a + rest)  # P(the rival gets k of the draws left)
    if rest == 0:  # the leader gets all the others
        return math.fsum(rival[k] for k in range(left + 1) if 2 * k >= gap + left)
    # Given the rival's k, the leader's i of the other n = left - k draws is BetaBinomial(n, a,
    # rest); the rival catches up when count + k ≥ lead + i. `none` is P(i = 0) for that n.
    none = math.prod((rest + j) / (a + rest + j) for j in range(left))
    caught = 0.0
    for k in range(left + 1):
        n = left - k
        if k > 0:
            none /= (rest + n) / (a + rest + n)  # from n + 1 draws to n
        if k < gap:
            continue
        p = rival[k] * none
        for i in range(min(k - gap, n) + 1):
            caught += p
            if i < n:
                p *= (n - i) / (i + 1) * (a + i) / (rest + n - i - 1)
    return caught


def _beta_binomial(n: int, a: float, b: float) -> list[float]:
    """P(k) for k = 0 … n: of `n` draws from a Pólya urn with weights `a` and `b`, k go to `a`."""
    if b == 0:
        return [0.0] * n + [1.0]
    p = math.prod((b + j) / (a + b + j) for j in range(n))  # k = 0; ≥ 1e-60 for n, a ≤ 100
    chances = [p]
    for k in range(n):
        p *= (n - k) / (k + 1) * (a + k) / (b + n - k - 1)
        chances.append(p)
    return chances
