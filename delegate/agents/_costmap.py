"""Prices and context windows from litellm's cost map, read without importing litellm.

litellm ships `model_prices_and_context_window_backup.json` inside its package. We locate the
package with `find_spec` (which does not import it: litellm's import takes seconds) and read the
file once. A model is looked up by its full litellm string ("openai/gpt-4o-mini"), then by the
name without its provider prefix ("gpt-4o-mini") — the second only when that entry belongs to the
same provider, so one provider's model is never priced as another's.

A litellm routing prefix picks an API, not a model, so it does not change the price:
"bedrock/converse/<id>", "bedrock/invoke/<id>" and "openai/responses/<id>" are looked up as
"bedrock/<id>" and "openai/<id>". A Bedrock region path ("bedrock/us-gov-west-1/<id>") keeps the
region's own entry where the map has one, and falls back to the model's otherwise, as litellm's
`get_model_info` does.

A price that is missing, zero or not a number is *unknown* (None), never free.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from delegate._log import get_logger

if TYPE_CHECKING:
    from delegate.agents.models import Price

__all__ = ["context_window_for", "model_info", "price_for"]

_COST_MAP_FILE = "model_prices_and_context_window_backup.json"
_PER_MILLION = 1_000_000

# Path segments after the provider that litellm reads as a route to an API, not as part of the
# model id (litellm's `strip_bedrock_routing_prefix`, and the `responses/` bridge of any provider).
_ROUTES: dict[str, frozenset[str]] = {
    "bedrock": frozenset({"converse", "invoke", "chat_completions", "mantle"}),
}
_ANY_PROVIDER_ROUTES = frozenset({"responses"})
# An AWS region as a Bedrock path segment: us-east-1, eu-central-2, us-gov-west-1, ...
_AWS_REGION = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}")

log = get_logger("delegate.costmap")


@functools.cache
def _cost_map() -> dict[str, dict[str, Any]]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        log.warning("cost_map_unavailable", reason="litellm is not installed")
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _COST_MAP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cost_map_unavailable", path=str(path), error=str(exc))
        return {}
    if not isinstance(data, dict):
        log.warning("cost_map_unavailable", path=str(path), error="not a JSON object")
        return {}
    # "sample_spec" documents the format; its values are descriptions, not a model.
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, dict) and key != "sample_spec"
    }


def model_info(model: str) -> dict[str, Any] | None:
    """litellm's cost-map entry for `model` (prices per token, context window, features).

    Args:
        model: a litellm model string such as "openai/gpt-4o-mini" or "claude-haiku-4-5".

    Returns:
        A copy of the entry, or None when the model is not in the map.
    """
    table = _cost_map()
    for name in _names(model):
        entry = table.get(name)
        if entry is None and "/" in name:
            provider, bare = name.split("/", 1)
            candidate = table.get(bare)
            if candidate is not None and str(candidate.get("litellm_provider", "")).startswith(
                provider
            ):
                entry = candidate
        if entry is not None:
            return dict(entry)
    return None


def _names(model: str) -> list[str]:
    """The names `model` is priced by, in order: as written; without its routing segments; for
    Bedrock, without its region path too."""
    provider, slash, path = model.partition("/")
    if not slash:
        return [model]
    routes = _ROUTES.get(provider, frozenset()) | _ANY_PROVIDER_ROUTES
    segments = path.split("/")
    lead = 0  # the routing and region segments before the model id
    while lead < len(segments) - 1 and (
        segments[lead] in routes
        or (provider == "bedrock" and _AWS_REGION.fullmatch(segments[lead]))
    ):
        lead += 1
    regions = [segment for segment in segments[:lead] if segment not in routes]
    rest = segments[lead:]
    names = [model, "/".join([provider, *regions, *rest]), "/".join([provider, *rest])]
    return list(dict.fromkeys(names))


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _per_mtok(value: float) -> float:
    # 1.5e-07 * 1e6 is 0.15000000000000002; round away the binary noise.
    return round(value * _PER_MILLION, 9)


@functools.lru_cache(maxsize=1024)
def price_for(model: str) -> Price | None:
    """USD per million tokens for `model`, or None when its input or output price is unknown."""
    # models.py imports this module, so Price is imported here, after models.py has loaded.
    from delegate.agents.models import Price

    info = model_info(model)
    if info is None:
        return None
    input_cost = _positive(info.get("input_cost_per_token"))
    output_cost = _positive(info.get("output_cost_per_token"))
    if input_cost is None or output_cost is None:
        return None
    cached_cost = _positive(info.get("cache_read_input_token_cost"))
    return Price(
        input_per_mtok=_per_mtok(input_cost),
        output_per_mtok=_per_mtok(output_cost),
        cached_input_per_mtok=None if cached_cost is None else _per_mtok(cached_cost),
    )


@functools.lru_cache(maxsize=1024)
def context_window_for(model: str) -> int | None:
    """The most input tokens `model` accepts, or None when the map does not say."""
    info = model_info(model)
    if info is None:
        return None
    window = info.get("max_input_tokens")
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        return None
    return window
