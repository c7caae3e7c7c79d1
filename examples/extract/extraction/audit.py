"""What the votes did, document by document: a `Model` wrapper that logs every call.

A run's result says what each task answered and spent, not how its samples voted. To show it —
which documents' samples disagreed, on which fields, and what the judge said — each model is
wrapped in a `Logged` model that records the calls it answers (the wrapper changes nothing about
the call: same request, same response, same price). This works alike for real, simulated and
fake models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pydantic

from delegate import Model, ModelRequest, ModelResponse, Price, Verdict
from extraction.pipeline import document_in
from extraction.schema import Invoice


@dataclass(frozen=True, slots=True)
class Call:
    """One answered model call.

    Attributes:
        agent: the agent whose model answered ("extractor", "judge", "reviewer").
        document: the document named in the request, if any.
        prompt: the request's last message.
        prompt_chars: the characters of every message of the request.
        text: the answer.
    """

    agent: str
    document: str | None
    prompt: str
    prompt_chars: int
    text: str


@dataclass(slots=True)
class CallLog:
    """Every call answered by the models wrapped with `wrap`, in the order they finished."""

    calls: list[Call] = field(default_factory=list)

    def wrap(self, model: Model, agent: str) -> Model:
        """`model`, with every answered call recorded under `agent`."""
        return Logged(model, agent, self)

    def of(self, agent: str, document: str | None = None) -> list[Call]:
        """The calls of `agent`, only those about `document` when it is given."""
        return [
            call
            for call in self.calls
            if call.agent == agent and (document is None or call.document == document)
        ]


class Logged:
    """A `Model` that forwards to `inner` and records each answered call in `log`."""

    def __init__(self, inner: Model, agent: str, log: CallLog) -> None:
        self.inner = inner
        self.agent = agent
        self.log = log

    @property
    def name(self) -> str:
        """The inner model's name: usage is reported under it."""
        return self.inner.name

    @property
    def price(self) -> Price | None:
        """The inner model's price."""
        return self.inner.price

    @property
    def context_window(self) -> int | None:
        """The inner model's context window, when it has one."""
        window = getattr(self.inner, "context_window", None)
        return window if isinstance(window, int) else None

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The inner model's response, recorded."""
        response = await self.inner.request(request)
        texts = [str(message.get("content") or "") for message in request.messages]
        document = next((found[0] for text in texts if (found := document_in(text))), None)
        self.log.calls.append(
            Call(
                agent=self.agent,
                document=document,
                prompt=texts[-1] if texts else "",
                prompt_chars=sum(map(len, texts)),
                text=response.text,
            )
        )
        return response


@dataclass(frozen=True, slots=True)
class Vote:
    """How one document's extraction was settled.

    Attributes:
        document: the document.
        samples: the sampled answers that parsed, as JSON data.
        disagreements: field → the distinct values the samples gave, when they gave several.
        verdicts: the judge's verdicts (none when the samples agreed).
    """

    document: str
    samples: list[dict[str, Any]]
    disagreements: dict[str, list[Any]]
    verdicts: list[Verdict]

    @property
    def unanimous(self) -> bool:
        """Whether every sample gave the same answer."""
        return not self.disagreements


def votes(log: CallLog, documents: list[str]) -> dict[str, Vote]:
    """Each document's samples, where they disagreed, and the judge's verdicts."""
    found: dict[str, Vote] = {}
    for document in documents:
        calls = log.of("extractor", document)
        # The samples are the calls on the task's own prompt (re-asks carry the judge's feedback).
        samples = [_parsed(call.text) for call in calls if call.prompt == calls[0].prompt]
        answers = [sample for sample in samples if sample is not None]
        disagreements: dict[str, list[Any]] = {}
        for name in Invoice.model_fields:
            values = {_canonical(answer.get(name)): answer.get(name) for answer in answers}
            if len(values) > 1:
                disagreements[name] = list(values.values())
        verdicts = [_verdict(call.text) for call in log.of("judge", document)]
        found[document] = Vote(
            document,
            answers,
            disagreements,
            [verdict for verdict in verdicts if verdict is not None],
        )
    return found


def _parsed(text: str) -> dict[str, Any] | None:
    try:
        return Invoice.model_validate_json(text).model_dump(mode="json")
    except pydantic.ValidationError:
        return None


def _verdict(text: str) -> Verdict | None:
    try:
        return Verdict.model_validate_json(text)
    except pydantic.ValidationError:
        return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
