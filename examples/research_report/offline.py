"""Offline stand-ins for the three models, built on `delegate.testing.FunctionModel`.

They behave like the real team, from the real inputs, deterministically:

- the **planner** picks 3-4 research questions whose keywords match the goal, and names a memory
  key for each; when its prompt's "Relevant memory" holds a finding under that key, it tells the
  researcher to recall it instead of searching again;
- a **researcher** recalls the finding its task names, or calls `search_corpus`, reads the two best
  documents with `read_document`, keeps the sentences that share the most rare words with its
  question (each cited), saves them with `remember` in the workflow's memory
  (`scope="workflow"`), and answers with a `Finding`;
- the **writer** turns the findings in its prompt into a `Report`: a summary of their first
  sentences and one section per finding, citations kept.

Each fake carries its real model's name and price, so usage and the cost table are what the same
tokens would cost on those models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from delegate import ConfigError, Message, ModelRequest, ModelResponse, SimulatedModel, ToolCall
from delegate.testing import FunctionModel, tool_call
from research_report.corpus import Corpus, citations, terms
from research_report.team import Finding, Report, Section


@dataclass(frozen=True, slots=True)
class Aspect:
    """A research question the fake planner can ask, and the goal words that call for it."""

    id: str
    heading: str
    question: str  # "{chem}" is replaced by the chemistries the goal names
    keywords: str

    @property
    def key(self) -> str:
        """The memory key its finding is saved under."""
        return f"finding/{self.id.replace('_', '-')}"


ASPECTS = (
    Aspect(
        "chemistry",
        "Chemistry and energy density",
        "How do {chem} cells differ in cathode materials, voltage and energy density?",
        "lfp nmc chemistry chemistries sodium lead acid lithium cathode energy density cell",
    ),
    Aspect(
        "lifetime",
        "Cycle life and degradation",
        "How many cycles do {chem} batteries last, and what wears their capacity down over time?",
        "lfp nmc lifetime life cycle degradation warranty ageing last",
    ),
    Aspect(
        "safety",
        "Thermal runaway and chemistry",
        "What causes thermal runaway, and how do {chem} batteries differ in fire risk?",
        "lfp nmc safety safe fire thermal runaway risk hazard",
    ),
    Aspect(
        "cost",
        "Cost",
        "What do {chem} home batteries cost installed, and per kWh delivered over their life?",
        "lfp nmc cost price worth cheap expensive economics money",
    ),
    Aspect(
        "codes",
        "Codes and standards",
        "What do NFPA 855 and the residential code require of a home battery: which listing, how "
        "many kWh per unit and location, and what spacing?",
        "fire code nfpa ul 9540 standard permit rules safety",
    ),
    Aspect(
        "placement",
        "Where to install",
        "Where is the safest place for a home battery, and what keeps it safe once it is in place?",
        "fire install installation placement garage indoors outdoors where safety",
    ),
    Aspect(
        "emergency",
        "If a battery overheats or catches fire",
        "What are the warning signs of a failing home battery, and what should people do if it "
        "catches fire?",
        "fire emergency smoke overheat firefighters safety",
    ),
    Aspect(
        "recycling",
        "Recycling and second life",
        "How are lithium-ion home batteries recycled, and can EV batteries get a second life?",
        "recycling recycle end life second reuse waste",
    ),
    Aspect(
        "eu_rules",
        "EU rules",
        "What does the EU Battery Regulation require of home batteries, such as passports and "
        "recycled content?",
        "eu europe european regulation passport recycled",
    ),
    Aspect(
        "incentives",
        "Incentives",
        "Which incentives and tax credits lower the cost of a home battery?",
        "incentive tax credit subsidy rebate cost",
    ),
    Aspect(
        "sizing",
        "Sizing",
        "How should a home battery be sized, in kWh and kW, for solar and for backup?",
        "size sizing capacity backup big kw kwh",
    ),
    Aspect(
        "solar",
        "Pairing with solar",
        "How does a battery change the value of rooftop solar under current tariffs?",
        "solar pv self consumption tariff rooftop",
    ),
)
_FILLERS = ("chemistry", "cost", "safety", "lifetime")
_CHEMISTRIES = {"lfp": "LFP", "nmc": "NMC", "sodium": "sodium-ion", "lead": "lead-acid"}
_MAX_QUESTIONS = 4
_ANSWER_SENTENCES = 3
_READ = 3
_DOMAIN_WORDS = ("home", "battery")
_CHEMISTRY_WORDS = ("lfp", "nmc", "sodium", "lead", "acid", "lithium", "ion")

_TASK = re.compile(r"Research question \(([^)]*)\): (.+?\?)")
_KEY = re.compile(r"under the key `([^`]+)`")
_RECALL = re.compile(r"memory already holds `([^`]+)`")
_MEMORY_SECTION = re.compile(r"^## Relevant memory\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_MEMORY_KEY = re.compile(r"^- (finding/[a-z0-9-]+): ", re.MULTILINE)
_RESULT = re.compile(r"^### \S+\n(\{.*\})$", re.MULTILINE)
_CITED_SENTENCE = re.compile(r".+?\[[^\]]+\.md\](?=\s|$)")


# --- the planner -------------------------------------------------------------------------------


def choose_aspects(goal: str) -> list[Aspect]:
    """The questions for `goal`: those whose keywords it names most, at least three."""
    words = set(terms(goal))
    scored = [(len(words & set(terms(a.keywords))), n, a) for n, a in enumerate(ASPECTS)]
    chosen = [a for score, _, a in sorted(scored, key=lambda s: (-s[0], s[1])) if score > 0]
    chosen = chosen[:_MAX_QUESTIONS]
    for filler in _FILLERS:
        if len(chosen) >= 3:
            break
        aspect = next(a for a in ASPECTS if a.id == filler)
        if aspect not in chosen:
            chosen.append(aspect)
    return chosen


def _chemistries(goal: str) -> str:
    named = [label for word, label in _CHEMISTRIES.items() if word in set(terms(goal))]
    return " and ".join(named) if named else "lithium-ion home"


def plan_for(goal: str, memory_keys: Sequence[str]) -> dict[str, Any]:
    """The plan the fake planner writes for `goal`, given the memory keys its prompt shows."""
    chem = _chemistries(goal)
    tasks = []
    for aspect in choose_aspects(goal):
        question = aspect.question.format(chem=chem)
        text = f"Research question ({aspect.heading}): {question} "
        if aspect.key in memory_keys:
            text += (
                f"Shared memory already holds `{aspect.key}` from an earlier run: recall it and "
                "reuse it instead of searching the corpus again."
            )
        else:
            text += (
                "Search the corpus, read the most relevant documents and answer in 2-4 sentences, "
                "each citing its file as [file.md]. Save your finding with remember under the "
                f"key `{aspect.key}`, with scope `workflow`."
            )
        tasks.append(
            {
                "id": aspect.id,
                "agent": "researcher",
                "instructions": text,
                "deps": [],
                "expected_output": "A Finding whose every sentence cites a corpus file.",
            }
        )
    note = (
        "Title the report with the goal; a summary, then one section per finding in plan order, "
        "keeping every [file.md] citation and listing each cited file once in sources."
    )
    return {"tasks": tasks, "synthesis_note": note}


def _plan(request: ModelRequest) -> str:
    if request.output_name != "Plan":
        raise ConfigError(
            "the offline planner only plans: give the orchestrator a synthesizer (the writer)"
        )
    system = "\n".join(m["content"] for m in request.messages if m["role"] == "system")
    goal = next(m["content"] for m in request.messages if m["role"] == "user")
    section = _MEMORY_SECTION.search(system)
    keys = _MEMORY_KEY.findall(section.group(1)) if section else []
    return json.dumps(plan_for(goal.split("\n\n", 1)[0], keys))


# --- the researcher ----------------------------------------------------------------------------


def _last_tool_round(messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """The tool calls of the last assistant turn and their results ([] before any)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = [
                ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
                for c in message.get("tool_calls", [])
            ]
            results = [m["content"] for m in messages[index + 1 :] if m["role"] == "tool"]
            return calls, results
    return [], []


def _search_query(question: str) -> str:
    words = re.findall(r"[A-Za-z0-9-]+", question)
    return " ".join(w for w in words if terms(w) and len(w) > 2)


class OfflineResearcher:
    """The fake researcher: a little state machine over the conversation so far."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus

    def __call__(self, request: ModelRequest) -> ModelResponse | str:
        prompt = next(m["content"] for m in request.messages if m["role"] == "user")
        found = _TASK.search(prompt)
        topic, question = found.groups() if found else ("Findings", prompt.split("\n")[0])
        calls, results = _last_tool_round(request.messages)
        step = calls[0].name if calls else None
        if step is None:
            recall = _RECALL.search(prompt)
            if recall:
                return tool_call("recall", key=recall.group(1))
            return tool_call("search_corpus", query=_search_query(question))
        if step == "recall" and not results[0].startswith("no memory under"):
            reused = json.loads(calls[0].arguments)["key"]
            return self._finding(topic, question, results[0], [reused])
        if step == "recall":
            return tool_call("search_corpus", query=_search_query(question))
        if step == "search_corpus":
            hits = json.loads(results[0])
            if not hits:
                return self._finding(topic, question, "The corpus has nothing on this.", [])
            # Read the best hits: those scoring at least half of the first (at most three).
            files = [h["file"] for h in hits if h["score"] >= hits[0]["score"] / 2][:_READ]
            reads = tuple(
                ToolCall(f"call_read_{n}", "read_document", json.dumps({"file": file}))
                for n, file in enumerate(files)
            )
            return ModelResponse(tool_calls=reads, finish_reason="tool_calls")
        if step == "read_document":
            texts = {
                json.loads(c.arguments)["file"]: r for c, r in zip(calls, results, strict=True)
            }
            # Words every question shares weigh less than the words of this one.
            context = {*_DOMAIN_WORDS, *(set(terms(question)) & set(_CHEMISTRY_WORDS))}
            best = self.corpus.best_sentences(question, texts, _ANSWER_SENTENCES, context=context)
            answer = " ".join(best)
            key = _KEY.search(prompt)
            slug = key.group(1) if key else f"finding/{'-'.join(terms(topic))}"
            tags = list(dict.fromkeys(terms(topic)))
            return tool_call("remember", key=slug, value=answer, tags=tags, scope="workflow")
        # after remember: the answer is what was saved
        answer = json.loads(calls[0].arguments)["value"]
        return self._finding(topic, question, answer, [])

    @staticmethod
    def _finding(topic: str, question: str, answer: str, reused: list[str]) -> str:
        finding = Finding(
            topic=topic,
            question=question,
            answer=answer,
            sources=citations(answer),
            from_memory=reused,
        )
        return finding.model_dump_json()


# --- the writer --------------------------------------------------------------------------------


def _write(request: ModelRequest) -> str:
    prompt = request.messages[-1]["content"]
    goal = prompt.split("## Goal\n", 1)[-1].split("\n\n", 1)[0].strip()
    findings = [Finding.model_validate_json(raw) for raw in _RESULT.findall(prompt)]
    sections = [Section(heading=f.topic, body=f.answer) for f in findings if f.sources]
    firsts = [_CITED_SENTENCE.match(f.answer) for f in findings if f.sources]
    summary = " ".join(m.group(0).strip() for m in firsts if m)
    text = " ".join([summary, *(s.body for s in sections)])
    report = Report(title=goal, summary=summary, sections=sections, sources=citations(text))
    return report.model_dump_json()


# --- the models --------------------------------------------------------------------------------


def _priced(fn: Any, name: str, latency: float) -> FunctionModel:
    price = SimulatedModel(name, time_scale=0).price
    if price is None:
        raise ConfigError(
            f"model {name!r} has no known price in litellm's cost map, so the offline run cannot "
            "show what it would cost; pass --planner/--worker with a priced model such as "
            "openai/o4-mini or openai/gpt-4o-mini"
        )
    return FunctionModel(
        fn,
        name=name,
        latency=latency,
        input_price=price.input_per_mtok,
        output_price=price.output_per_mtok,
    )


@dataclass(frozen=True, slots=True)
class OfflineModels:
    """The three fakes of one run; `planner.requests` shows what the planner was sent."""

    planner: FunctionModel
    researcher: FunctionModel
    writer: FunctionModel


def offline_models(corpus: Corpus, planner: str, worker: str) -> OfflineModels:
    """Fakes named and priced like `planner` and `worker` (the writer runs on the worker's model).

    Raises:
        ConfigError: a model has no known price.
    """
    return OfflineModels(
        planner=_priced(_plan, planner, latency=0.2),
        researcher=_priced(OfflineResearcher(corpus), worker, latency=0.02),
        writer=_priced(_write, worker, latency=0.05),
    )
