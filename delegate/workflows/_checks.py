"""The rules across a workflow's fields, all checked at once on its plain data.

`check_workflow` runs on the data of a validated `WorkflowSpec` (its validator calls it) and, by
the loader, on the raw data of a file whose fields did not all validate, so that every problem
is reported in one pass. It therefore never trusts a type: anything malformed is skipped here
(the field validation reports it).

Checked: agent names wherever they are used (with did-you-mean; a strategy's workers too), votes
and a strategy not given together, a strategy's scoring function, fallback loops, tools, the mode
(steps or planner, not both, not neither), step ids (unique, not reserved), `needs` (known, not
itself, listed above, no cycles), templates (`delegate.workflows._templates`), output schemas
(`delegate.workflows.outputs`), `output:`, MCP servers (a command or a url) and the agents'
`mcp:` names, endpoints (their URLs, the names agents give, an agent given both `endpoint:` and
an inline server), and that every model under a usd budget has a price (`prices:`, the agent's or
its endpoint's `price:`, or litellm's).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from delegate.errors import did_you_mean
from delegate.orchestrator.graph import PROMPT_ENV, RESERVED_NAMES
from delegate.workflows._templates import (
    Finding,
    Scope,
    StepInfo,
    TemplateReport,
    check_expression,
    check_template,
)
from delegate.workflows.outputs import schema_problems
from delegate.workflows.spec import MAX_STEPS, STDIO_KEYS
from delegate.workflows.tools import tool_problem

__all__ = ["Issue", "Report", "check_workflow", "price_remedy", "unpriced_models"]

Loc: TypeAlias = tuple[str | int, ...]

_PLANNER_KEYS = (
    "planner",
    "workers",
    "goal",
    "max_replans",
    "max_tasks",
    "synthesizer",
    "judge_goal",
)
_RESERVED_IDS = frozenset({*RESERVED_NAMES, "steps", "item", "loop", *PROMPT_ENV.globals})
_TOOL_PATH = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_WHEN_EXAMPLE = "\"{{ inputs.depth == 'deep' }}\""
_FOREACH_EXAMPLE = '"{{ steps.<id>.output.<list property> }}"'


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem at a path of the data.

    Attributes:
        loc: the path, as pydantic gives error locations (`("steps", 1, "needs", 0)`).
        message: the whole message, naming the thing and the fix.
        key: point at the key of `loc` rather than its value.
        line: the 1-based line inside a template value (0: where the value starts).
    """

    loc: Loc
    message: str
    key: bool = False
    line: int = 0


@dataclass(slots=True)
class Report:
    """What `check_workflow` found: the issues, and the steps each step's templates add."""

    issues: list[Issue] = field(default_factory=list)
    implicit_needs: dict[str, tuple[str, ...]] = field(default_factory=dict)


def check_workflow(data: Mapping[str, Any], *, base_dir: Path) -> Report:
    """Check the rules across fields of a workflow's data.

    Args:
        data: the workflow as plain data (parsed YAML, or a `WorkflowSpec` dumped).
        base_dir: the workflow file's folder, where tool modules are looked for first.
    """
    checker = _Checker(data, base_dir)
    checker.run()
    return checker.report


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[tuple[int, str]]:
    return (
        [(n, v) for n, v in enumerate(value) if isinstance(v, str)]
        if isinstance(value, list)
        else []
    )


_SUGGESTED_MODELS = 20  # unknown models per file with a "did you mean" (each scans litellm's list)


# The keys of each strategy (`strategy: {kind: {...}}`) that name agents.
_STRATEGY_AGENTS = {
    "best_of_n": ("judge",),
    "mixture_of_agents": ("proposers", "aggregator"),
    "self_refine": ("critic",),
}


def _strategy_agents(strategy: Any) -> list[tuple[Loc, str]]:
    """The agents a `strategy:` mapping names, each with its path inside the strategy."""
    named: list[tuple[Loc, str]] = []
    for kind, settings in _mapping(strategy).items():
        for key in _STRATEGY_AGENTS.get(kind, ()):
            value = _mapping(settings).get(key)
            if isinstance(value, str):
                named.append(((kind, key), value))
            named.extend(((kind, key, n), name) for n, name in _strings(value))
    return named


def _step_label(step: Mapping[str, Any], position: int) -> str:
    step_id = step.get("id")
    return f"step {step_id!r}" if isinstance(step_id, str) and step_id else f"step #{position + 1}"


class _Checker:
    def __init__(self, data: Mapping[str, Any], base_dir: Path) -> None:
        self.data, self.base_dir = data, base_dir
        self.report = Report()
        # Malformed agents or inputs are reported by field validation; names are not checked
        # against them then, which would only repeat that problem at every use.
        self.agents = _mapping(data.get("agents"))
        self.check_agents = isinstance(data.get("agents"), Mapping)
        inputs = data.get("inputs", {})
        self.inputs: dict[str, str | None] | None = (
            {
                name: (spec.get("type", "string") if isinstance(spec, Mapping) else None)
                for name, spec in inputs.items()
            }
            if isinstance(inputs, Mapping)
            else None
        )
        steps = data.get("steps")
        if not isinstance(steps, list) or len(steps) > MAX_STEPS:
            steps = []  # too many is reported by field validation; checking them would be slow
        self.steps = [(n, step) for n, step in enumerate(steps) if isinstance(step, Mapping)]
        self.infos: dict[str, StepInfo] = {}
        self.edges: dict[str, list[str]] = {}
        self.tools: dict[str, str | None] = {}  # each tool is looked up once
        self.unknown_models: set[str] = set()

    def issue(self, loc: Loc, message: str, *, key: bool = False, line: int = 0) -> None:
        self.report.issues.append(Issue(loc, message, key, line))

    def run(self) -> None:
        self._mode()
        self._agents()
        self._steps()
        self._planner_mode()
        self._output()
        self._endpoints()
        self._mcp()
        self._models()
        self._prices()
        self._routing()

    def _routing(self) -> None:
        """Learned routing learns from verdicts: some agent or step must have a judge."""
        if self.data.get("routing") is None:
            return
        judged = any(
            isinstance(spec, Mapping) and spec.get("verify") for spec in self.agents.values()
        )
        judged = judged or any(step.get("verify") for _, step in self.steps)
        if not judged:
            self.issue(
                ("routing",),
                "routing learns from verification, and no agent or step of this workflow has "
                "verify:; give the workers' agents verify: <a judge agent> (or the steps), or "
                "drop routing",
                key=True,
            )

    # -- mode and agents ------------------------------------------------------------------------

    def _mode(self) -> None:
        planner_keys = [key for key in _PLANNER_KEYS if key in self.data]
        if "steps" in self.data and planner_keys:
            self.issue(
                (planner_keys[0],),
                f"this workflow has steps and planner-mode keys ({', '.join(planner_keys)}); a "
                "workflow is static (steps) or planner mode (planner, workers, goal), not both — "
                "for a planned sub-goal among steps, use a step with kind: plan",
                key=True,
            )
        elif "steps" not in self.data and not planner_keys:
            self.issue(
                (),
                "the workflow has neither steps nor a planner: give steps: [...] (static), or "
                "planner:, workers: and goal: (planner mode)",
            )
        elif "steps" not in self.data:
            missing = [key for key in ("planner", "workers", "goal") if key not in self.data]
            if missing:
                self.issue(
                    (),
                    f"planner mode needs {', '.join(missing)}: planner: <agent>, "
                    'workers: [<agents>], goal: "..."',
                )

    def agent_ref(self, loc: Loc, name: Any, what: str) -> None:
        """An agent name used at `loc` must be one of the workflow's agents."""
        if self.check_agents and isinstance(name, str) and name not in self.agents:
            self.issue(
                loc,
                f"{what} {name!r} is not an agent of this workflow"
                f"{did_you_mean(name, self.agents)}; define it under agents:",
            )

    def agent_list(self, loc: Loc, names: Any, what: str) -> None:
        seen: set[str] = set()
        for n, name in _strings(names):
            if name in seen:
                self.issue((*loc, n), f"{what} lists {name!r} twice; list each agent once")
            seen.add(name)
            self.agent_ref((*loc, n), name, f"{what}:")

    def _agents(self) -> None:
        for name, spec in self.agents.items():
            if not isinstance(spec, Mapping):
                continue
            label = f"agent {name!r}"
            for key in ("fallback", "verify"):
                self.agent_ref(("agents", name, key), spec.get(key), f"{label}: {key}")
            self._settings(("agents", name), spec, label, votes=spec.get("votes", 1))
            for key in ("tools", "approve_tools"):
                for n, tool in _strings(spec.get(key)):
                    if tool not in self.tools:
                        valid = _TOOL_PATH.match(tool)
                        self.tools[tool] = tool_problem(tool, self.base_dir) if valid else None
                    problem = self.tools[tool]
                    if problem:
                        self.issue(("agents", name, key, n), f"{label}: {problem}")
        self._fallback_loops()

    def _settings(self, loc: Loc, spec: Mapping[str, Any], label: str, votes: Any) -> None:
        """A step's or an agent's strategy: the agents it names, its scoring function, and
        no votes beside it."""
        strategy = spec.get("strategy")
        if strategy is None:
            return
        for where, name in _strategy_agents(strategy):
            what = " ".join(str(part) for part in where if not isinstance(part, int))
            self.agent_ref((*loc, "strategy", *where), name, f"{label}: strategy {what}")
        score = _mapping(_mapping(strategy).get("best_of_n")).get("score")
        if isinstance(score, str) and _TOOL_PATH.match(score):
            if score not in self.tools:
                self.tools[score] = tool_problem(score, self.base_dir)
            problem = self.tools[score]
            if problem:
                where = (*loc, "strategy", "best_of_n", "score")
                self.issue(where, f"{label}: strategy best_of_n score: {problem}")
        if votes is not None and votes != 1:
            self.issue(
                (*loc, "strategy"),
                f"{label} has votes: and strategy:; give one of them (a strategy picks its own "
                "answer)",
                key=True,
            )

    def _fallback_loops(self) -> None:
        reported: set[str] = set()
        for start in self.agents:
            chain = [start]
            while True:
                nxt = _mapping(self.agents.get(chain[-1])).get("fallback")
                if not isinstance(nxt, str) or nxt not in self.agents:
                    break
                if nxt in chain:
                    loop = [*chain[chain.index(nxt) :], nxt]
                    if not reported.intersection(loop):
                        shown = " → ".join(repr(a) for a in loop)
                        what = (
                            f"agent {nxt!r} falls back to itself"
                            if len(loop) == 2
                            else f"agents {shown} fall back to each other in a loop"
                        )
                        self.issue(
                            ("agents", loop[0], "fallback"),
                            f"{what}; a fallback chain must end: remove one fallback",
                        )
                        reported.update(loop)
                    break
                chain.append(nxt)

    # -- steps -----------------------------------------------------------------------------------

    def _steps(self) -> None:
        first: dict[str, int] = {}
        for n, step in self.steps:
            step_id = step.get("id")
            if not isinstance(step_id, str):
                continue
            if step_id in first:
                self.issue(
                    ("steps", n, "id"),
                    f"duplicate step id {step_id!r}: step #{first[step_id] + 1} has it too; give "
                    "every step its own id",
                )
            elif step_id in _RESERVED_IDS:
                self.issue(
                    ("steps", n, "id"),
                    f"step id {step_id!r} is a name templates use; choose another id",
                )
            else:
                first[step_id] = n
                output = step.get("output")
                self.infos[step_id] = StepInfo(
                    step_id,
                    n,
                    kind=str(step.get("kind", "agent")),
                    foreach=isinstance(step.get("foreach"), str),
                    schema=output if isinstance(output, Mapping) else None,
                )
        for n, step in self.steps:
            self._step(n, step)
        self._order()

    def _step(self, n: int, step: Mapping[str, Any]) -> None:
        label = _step_label(step, n)
        kind = step.get("kind", "agent")
        if kind == "plan":
            self.agent_ref(("steps", n, "planner"), step.get("planner"), f"{label}: planner")
            self.agent_list(("steps", n, "workers"), step.get("workers"), f"{label}: workers")
        elif kind == "agent":
            self.agent_ref(("steps", n, "agent"), step.get("agent"), f"{label}: agent")
            self.agent_ref(("steps", n, "verify"), step.get("verify"), f"{label}: verify")
            self._settings(("steps", n), step, label, votes=step.get("votes"))
            output = step.get("output")
            if isinstance(output, Mapping):
                for path, message in schema_problems(output):
                    self.issue(("steps", n, "output", *path), f"{label}: {message}")
        else:
            return  # field validation reports the kind
        step_id = step.get("id")
        info = self.infos.get(step_id) if isinstance(step_id, str) else None
        owner = info if info is not None and info.position == n else StepInfo(f"#{n + 1}", n)
        needs = self._needs(n, step, label, owner)
        refs = self._templates(n, step, label, Scope(self.inputs, self.infos, owner, needs))
        if owner is info:
            implicit = tuple(ref for ref in refs if ref not in needs)
            if implicit:
                self.report.implicit_needs[owner.id] = implicit
            self.edges[owner.id] = [*needs, *implicit]

    def _needs(
        self, n: int, step: Mapping[str, Any], label: str, owner: StepInfo
    ) -> frozenset[str]:
        valid: list[str] = []
        for m, need in _strings(step.get("needs")):
            loc = ("steps", n, "needs", m)
            if need in valid:
                self.issue(loc, f"{label}: needs lists {need!r} twice; list it once")
            elif need == owner.id:
                self.issue(loc, f"{label} needs itself; remove {need!r} from its needs")
            elif need not in self.infos:
                self.issue(
                    loc,
                    f"{label} needs {need!r}, which is not a step of this workflow"
                    f"{did_you_mean(need, self.infos)}",
                )
            else:
                valid.append(need)
        return frozenset(valid)

    def _templates(self, n: int, step: Mapping[str, Any], label: str, scope: Scope) -> list[str]:
        """Check the step's templates; returns the steps they name, in order."""
        reports: list[tuple[str, TemplateReport]] = []
        foreach = step.get("foreach")
        text_field = "goal" if step.get("kind") == "plan" else "prompt"
        text = step.get(text_field)
        if isinstance(text, str):
            fans_out = isinstance(foreach, str) and text_field == "prompt"
            item_scope = Scope(scope.inputs, scope.steps, scope.owner, scope.needs, item=fans_out)
            reports.append((text_field, check_template(text, item_scope, what=text_field)))
        if isinstance(foreach, str) and text_field == "prompt":
            reports.append(
                (
                    "foreach",
                    check_expression(
                        foreach, scope, what="foreach", example=_FOREACH_EXAMPLE, wants_list=True
                    ),
                )
            )
        when = step.get("when")
        if isinstance(when, str):
            reports.append(
                ("when", check_expression(when, scope, what="when", example=_WHEN_EXAMPLE))
            )
        refs: list[str] = []
        for key, report in reports:
            self._findings(("steps", n, key), label, report.findings)
            refs.extend(ref for ref in report.steps if ref not in refs)
        return refs

    def _findings(self, loc: Loc, label: str, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.issue(loc, f"{label}: {finding.message}", line=finding.line)

    def _order(self) -> None:
        """Cycles (named), then needs on steps listed below (not on a cycle)."""
        on_cycle: set[tuple[str, str]] = set()
        for cycle in _cycles(self.edges):
            edges = list(itertools.pairwise(cycle))
            on_cycle.update(edges)
            # Point at the need that goes down the list: every cycle has one.
            step, need = next(
                (a, b) for a, b in edges if self.infos[b].position >= self.infos[a].position
            )
            shown = " → ".join(repr(s) for s in cycle)
            self.issue(
                self._need_loc(step, need),
                f"steps {shown} form a cycle (each needs the next); remove one of these needs",
            )
        for step_id, needs in self.edges.items():
            info = self.infos[step_id]
            for need in needs:
                if self.infos[need].position > info.position and (step_id, need) not in on_cycle:
                    self.issue(
                        self._need_loc(step_id, need),
                        f"step {step_id!r} needs {need!r}, which is listed after it; move step "
                        f"{need!r} above step {step_id!r} (steps are listed in the order they "
                        "can run)",
                    )

    def _need_loc(self, step_id: str, need: str) -> Loc:
        position = self.infos[step_id].position
        step = dict(self.steps)[position]
        for m, name in _strings(step.get("needs")):
            if name == need:
                return ("steps", position, "needs", m)
        return ("steps", position, "needs")

    # -- planner mode, output, prices -------------------------------------------------------------

    def _planner_mode(self) -> None:
        if "steps" in self.data:
            return
        self.agent_ref(("planner",), self.data.get("planner"), "planner:")
        self.agent_list(("workers",), self.data.get("workers"), "workers")
        self.agent_ref(("synthesizer",), self.data.get("synthesizer"), "synthesizer:")
        goal = self.data.get("goal")
        if isinstance(goal, str):
            report = check_template(goal, Scope(self.inputs, {}), what="goal")
            for finding in report.findings:
                self.issue(("goal",), finding.message, line=finding.line)

    def _output(self) -> None:
        output = self.data.get("output")
        if not isinstance(output, str):
            return
        if "steps" not in self.data:
            self.issue(
                ("output",),
                "output names a step, but a planner-mode workflow has no steps (its output is "
                "the synthesis); remove output:",
            )
        elif output not in self.infos:
            self.issue(
                ("output",),
                f"output {output!r} is not a step of this workflow"
                f"{did_you_mean(output, self.infos)}",
            )

    def _usd_scopes(self) -> dict[str, str]:
        """The agents whose calls fall under a usd budget, each with that budget's label."""
        scopes: dict[str, str] = {}
        if _mapping(self.data.get("budget")).get("usd") is not None:
            scopes = dict.fromkeys(self.agents, "the workflow's budget")
        for name, spec in self.agents.items():
            if _mapping(_mapping(spec).get("budget")).get("usd") is not None:
                scopes.setdefault(name, f"the budget of agent {name!r}")
        for n, step in self.steps:
            if _mapping(step.get("budget")).get("usd") is None:
                continue
            label = f"the budget of {_step_label(step, n)}"
            users = [step.get(key) for key in ("agent", "verify", "planner")]
            users += [name for _, name in _strings(step.get("workers"))]
            users += [name for _, name in _strategy_agents(step.get("strategy"))]
            for user in users:
                if isinstance(user, str):
                    scopes.setdefault(user, label)
        # Fallbacks, judges and strategy workers spend under the budgets of the agent they
        # work for.
        pending = list(scopes)
        while pending:
            name = pending.pop()
            spec = _mapping(self.agents.get(name))
            others = [spec.get(key) for key in ("fallback", "verify")]
            others += [other for _, other in _strategy_agents(spec.get("strategy"))]
            for other in others:
                if isinstance(other, str) and other in self.agents and other not in scopes:
                    scopes[other] = scopes[name]
                    pending.append(other)
        return {name: label for name, label in scopes.items() if name in self.agents}

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoints(self) -> None:
        """Endpoints' URLs; agents' `endpoint:` names, and inline `base_url:` used alone."""
        from delegate.agents.endpoints import check_base_url

        endpoints = self.data.get("endpoints")
        for name, spec in _mapping(endpoints).items():
            url = _mapping(spec).get("base_url")
            problem = check_base_url(url) if isinstance(url, str) else None
            if problem is not None:
                self.issue(("endpoints", name, "base_url"), f"endpoint {name!r}: {problem}")
        for name, spec in self.agents.items():
            spec = _mapping(spec)
            label = f"agent {name!r}"
            endpoint = spec.get("endpoint")
            inline = [key for key in ("base_url", "api_key_env") if key in spec]
            if endpoint is not None and inline:
                self.issue(
                    ("agents", name, inline[0]),
                    f"{label} has endpoint: and {inline[0]}:; give the server once — under "
                    f"endpoints: (and keep endpoint: {endpoint}), or inline (and drop endpoint:)",
                    key=True,
                )
            elif "api_key_env" in spec and "base_url" not in spec:
                self.issue(
                    ("agents", name, "api_key_env"),
                    f"{label}: api_key_env goes with base_url: (the server it is the key of); "
                    "add base_url:, or use endpoint: with a server under endpoints:",
                    key=True,
                )
            url = spec.get("base_url")
            problem = check_base_url(url) if isinstance(url, str) else None
            if problem is not None:
                self.issue(("agents", name, "base_url"), f"{label}: {problem}")
            if isinstance(endpoint, str) and isinstance(endpoints, Mapping):
                if endpoint not in endpoints:
                    defined = ", ".join(map(repr, endpoints)) or "none"
                    self.issue(
                        ("agents", name, "endpoint"),
                        f"{label}: endpoint {endpoint!r} is not an endpoint of this workflow"
                        f"{did_you_mean(endpoint, endpoints)} (endpoints: {defined}); define "
                        "it under endpoints:",
                    )
            elif isinstance(endpoint, str) and "endpoints" not in self.data:
                self.issue(
                    ("agents", name, "endpoint"),
                    f"{label}: endpoint {endpoint!r} is not defined: this workflow has no "
                    f"endpoints:; add endpoints: {{{endpoint}: {{base_url: ...}}}}",
                )

    def _served(self, spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The endpoint an agent's models are sent to (its own `base_url:` inline, or the one
        under endpoints: it names); None for the provider's own."""
        if isinstance(spec.get("base_url"), str):
            return spec
        endpoint = spec.get("endpoint")
        if isinstance(endpoint, str):
            return _mapping(_mapping(self.data.get("endpoints")).get(endpoint))
        return None

    def priced(self, name: str, key: str) -> bool:
        """Whether agent `name`'s `key` model ("model" or "cheaper") has a price: `prices:`,
        the agent's `price:` (its model only), its endpoint's `price:`, or litellm's."""
        from delegate.agents._costmap import price_for

        spec = _mapping(self.agents.get(name))
        model = spec.get(key)
        if not isinstance(model, str):
            return True  # malformed or absent: nothing to price
        served = self._served(spec)
        return (
            model in _mapping(self.data.get("prices"))
            or (key == "model" and spec.get("price") is not None)
            or (served is not None and served is not spec and served.get("price") is not None)
            or price_for(model) is not None
        )

    # -- MCP servers ---------------------------------------------------------------------------

    def _mcp(self) -> None:
        """Each server is a command or a url, with only that kind's keys; agents' `mcp:` names
        servers defined under mcp_servers:."""
        servers = self.data.get("mcp_servers")
        for name, spec in _mapping(servers).items():
            if not isinstance(spec, Mapping):
                continue
            where = ("mcp_servers", name)
            if "command" in spec and "url" in spec:
                self.issue(
                    (*where, "url"),
                    f"MCP server {name!r} has command: and url:; give command: for a server run "
                    "over stdio, or url: for one reached over HTTP, not both",
                    key=True,
                )
            elif "command" not in spec and "url" not in spec:
                self.issue(
                    where,
                    f"MCP server {name!r} has neither command: nor url:; give command: (and "
                    "args:) for a server run over stdio, or url: for one reached over HTTP",
                )
            elif "url" in spec:
                for key in (k for k in STDIO_KEYS if k in spec):
                    self.issue(
                        (*where, key),
                        f"MCP server {name!r}: {key}: goes with command: (a server run over "
                        "stdio); a url: server takes headers_env:",
                        key=True,
                    )
            elif "headers_env" in spec:
                self.issue(
                    (*where, "headers_env"),
                    f"MCP server {name!r}: headers_env: goes with url: (a server reached over "
                    "HTTP); give a command: server its secrets with env_from:",
                    key=True,
                )
        known = _mapping(servers)
        defined = ", ".join(map(repr, known)) or "none"
        for agent, spec in self.agents.items():
            used = _mapping(spec).get("mcp")
            named = (
                [((n,), name) for n, name in _strings(used)]
                if isinstance(used, list)
                else [((name,), name) for name in _mapping(used) if isinstance(name, str)]
            )
            for at, name in named:
                if name not in known:
                    self.issue(
                        ("agents", agent, "mcp", *at),
                        f"agent {agent!r}: MCP server {name!r} is not defined under mcp_servers:"
                        f"{did_you_mean(name, known)} (servers: {defined}); define it there",
                        key=isinstance(used, Mapping),
                    )

    def _models(self) -> None:
        """Every agent's models must be ones litellm can serve (see `_models.model_problem`)."""
        from delegate.workflows._models import model_problem

        prices = _mapping(self.data.get("prices"))
        for name, spec in self.agents.items():
            # A server of one's own serves whatever models it has, under any name.
            own_server = self._served(_mapping(spec)) is not None
            for key in ("model", "cheaper"):
                model = _mapping(spec).get(key)
                if not isinstance(model, str) or not model.strip() or model != model.strip():
                    continue  # malformed: reported by field validation
                suggest = len(self.unknown_models) < _SUGGESTED_MODELS
                problem = model_problem(model, model in prices or own_server, suggest)
                if problem is not None:
                    self.unknown_models.add(model)
                    self.issue(("agents", name, key), f"agent {name!r}: {problem}")

    def _prices(self) -> None:
        for name, label in self._usd_scopes().items():
            spec = _mapping(self.agents.get(name))
            for key in ("model", "cheaper"):
                model = spec.get(key)
                if model in self.unknown_models:
                    continue  # reported as unknown already
                if isinstance(model, str) and not self.priced(name, key):
                    self.issue(
                        ("agents", name, key),
                        f"agent {name!r}: model {model!r} has no known price, so its calls cannot "
                        f"be checked against {label} (an unknown price is never taken as free); "
                        f"{price_remedy(spec, model)}",
                    )

    def unpriced(self) -> list[Issue]:
        """Every agent's model with no price anywhere, as warnings (valid without a usd
        budget, but its spend is not counted in dollars)."""
        found: list[Issue] = []
        for name, spec in self.agents.items():
            for key in ("model", "cheaper"):
                model = _mapping(spec).get(key)
                if isinstance(model, str) and not self.priced(name, key):
                    found.append(
                        Issue(
                            ("agents", name, key),
                            f"agent {name!r}: model {model!r} has no price, so its spend is "
                            "not counted in dollars and no usd budget can cover it; "
                            f"{price_remedy(_mapping(spec), model)}",
                        )
                    )
        return found


def price_remedy(spec: Mapping[str, Any], model: str) -> str:
    """How to price `model` of an agent written as `spec`."""
    generic = (
        f"give its price: prices: {{{model}: [input_usd_per_million, output_usd_per_million]}}"
    )
    endpoint = spec.get("endpoint")
    if isinstance(endpoint, str):
        return (
            f"give endpoint {endpoint!r} a price (price: [0, 0] for a self-hosted model you do "
            f"not pay per token), or {generic}"
        )
    if isinstance(spec.get("base_url"), str):
        return (
            "give the agent a price (price: [0, 0] for a self-hosted model you do not pay per "
            f"token), or {generic}"
        )
    return generic


def unpriced_models(data: Mapping[str, Any], *, base_dir: Path) -> list[Issue]:
    """The agents' models of a valid workflow that have no price (for `delegate validate`'s
    warnings): neither `prices:`, an agent's or endpoint's `price:`, nor litellm's."""
    return _Checker(data, base_dir).unpriced()


def _cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Cycles among `edges` (step → the steps it needs), each as [a, b, ..., a]."""
    # A need on a step without edges (one whose kind is invalid) cannot be on a cycle.
    pending = {step: sum(need in edges for need in needs) for step, needs in edges.items()}
    needed_by: dict[str, list[str]] = {}
    for step, needs in edges.items():
        for need in needs:
            needed_by.setdefault(need, []).append(step)
    ready = [step for step, count in pending.items() if count == 0]
    while ready:
        for child in needed_by.get(ready.pop(), []):
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    stuck = [step for step, count in pending.items() if count > 0]
    cycles: list[list[str]] = []
    covered: set[str] = set()
    for start in stuck:
        if start in covered:
            continue
        walk = [start]
        while True:
            node = next(need for need in edges[walk[-1]] if pending.get(need, 0) > 0)
            if node in walk:
                cycle = [*walk[walk.index(node) :], node]
                if not covered.intersection(cycle):
                    cycles.append(cycle)
                covered.update(walk)
                break
            walk.append(node)
    return cycles
