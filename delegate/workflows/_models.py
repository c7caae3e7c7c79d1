"""Which model names a workflow may use: the ones litellm can serve, with "did you mean" for the
rest.

A model is known when litellm's cost map has it (read offline through
`delegate.agents._costmap`, without importing litellm), when it runs on a local or self-hosted
server whose models litellm cannot list (`ollama/...`, `hosted_vllm/...`, ...), or when the
workflow gives its price (`prices:`) and it names a provider litellm knows. Anything else is a
typo or a model litellm cannot reach: a run would be refused by the provider after other calls
were paid for, or — simulated — would run at $0 under a banner that says the prices are real.
A model sent to an endpoint of the workflow (a server of one's own) may have any name its
provider prefix allows.

`agent_model` builds an agent's model as the file says: on its endpoint, at its price.
"""

from __future__ import annotations

import difflib
import functools
from typing import TYPE_CHECKING

from delegate.agents._costmap import _cost_map, model_info

if TYPE_CHECKING:
    from delegate.agents.endpoints import Endpoint
    from delegate.agents.models import Model
    from delegate.workflows.spec import AgentSpec, WorkflowSpec

__all__ = ["LOCAL_PROVIDERS", "agent_endpoint", "agent_model", "model_problem"]

LOCAL_PROVIDERS = frozenset(
    {
        "custom",
        "custom_openai",
        "docker_model_runner",
        "hosted_vllm",
        "litellm_proxy",
        "llamafile",
        "lm_studio",
        "ollama",
        "ollama_chat",
        "oobabooga",
        "openai_like",
        "petals",
        "triton",
        "vllm",
        "xinference",
    }
)
"""litellm providers that serve whatever models their server has: any model name is accepted."""


@functools.cache
def _index() -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """litellm's providers, and each one's models as a workflow writes them ("openai/gpt-4o")
    ("" for the cost map's names without a provider)."""
    providers: set[str] = set(LOCAL_PROVIDERS)
    names: dict[str, list[str]] = {}
    for key, entry in _cost_map().items():
        provider = str(entry.get("litellm_provider") or "")
        if not provider:
            continue
        # "vertex_ai-language-models" is written "vertex_ai/<model>".
        written = {provider, provider.split("-", 1)[0]}
        providers.update(written)
        if "/" not in key:
            names.setdefault("", []).append(key)
        for prefix in written:
            names.setdefault(prefix, []).append(
                key if key.startswith(f"{prefix}/") else f"{prefix}/{key}"
            )
    return frozenset(providers), {p: tuple(dict.fromkeys(v)) for p, v in names.items()}


def _closest(name: str, choices: tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    return close[0] if close else None


def _did_you_mean(suggestion: str | None) -> str:
    return f" (did you mean {suggestion!r}?)" if suggestion else ""


@functools.lru_cache(maxsize=1024)
def model_problem(model: str, priced: bool = False, suggest: bool = True) -> str | None:
    """Why litellm cannot serve `model`, with the closest model it knows; None when it can.

    Args:
        model: a litellm model string such as "openai/gpt-4o-mini".
        priced: the workflow gives the model's price (`prices:`): a model of a provider
            litellm knows is then accepted as it is.
        suggest: look for the closest name (it scans litellm's list: a few milliseconds).
    """
    if model_info(model) is not None:
        return None
    provider, slash, bare = model.partition("/")
    if slash and provider in LOCAL_PROVIDERS:
        return None
    providers, names = _index()
    if slash and provider not in providers:
        other = _closest(provider, tuple(sorted(providers))) if suggest else None
        if other is not None and model_info(f"{other}/{bare}") is not None:
            hint = _did_you_mean(f"{other}/{bare}")
        else:
            hint = _did_you_mean(other)
        return (
            f"model {model!r} names the provider {provider!r}, which litellm does not know"
            f"{hint}; write it as litellm's '<provider>/<model>'"
        )
    if priced:
        return None
    choices = names.get(provider if slash else "", ())
    suggestion = _closest(model, choices) if suggest else None
    return (
        f"model {model!r} is not one litellm knows{_did_you_mean(suggestion)}; correct the "
        "name, or, for a model litellm does not list (a new model, a deployment), give its "
        f"price: prices: {{{model}: [input_usd_per_million, output_usd_per_million]}}"
    )


def agent_endpoint(spec: WorkflowSpec, agent: AgentSpec) -> Endpoint | None:
    """The server agent `agent`'s models are sent to: the one it names under endpoints:, or its
    own base_url:; None for the provider's own."""
    from delegate.agents.endpoints import Endpoint

    if agent.endpoint is not None:
        served = spec.endpoints[agent.endpoint]  # the spec's validation checked the name
        return Endpoint(
            served.base_url,
            api_key_env=served.api_key_env,
            api_version=served.api_version,
            headers_env=served.headers_env,
            price=served.price,
            name=agent.endpoint,
        )
    if agent.base_url is not None:
        return Endpoint(agent.base_url, api_key_env=agent.api_key_env)
    return None


def agent_model(spec: WorkflowSpec, agent: str, name: str, key: str) -> str | Model:
    """Agent `agent`'s `key` model ("model" or "cheaper"), named `name`: a `LiteLLMModel` on
    its endpoint, at its price, when the file gives either; else the name (litellm's defaults)."""
    from delegate.agents.models import LiteLLMModel

    written = spec.agents[agent]
    endpoint = agent_endpoint(spec, written)
    price = written.price if key == "model" else None
    if endpoint is None and price is None:
        return name
    return LiteLLMModel(name, endpoint=endpoint, price=price)
