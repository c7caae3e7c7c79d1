"""Where a model is served: `Endpoint`, a server of your own (Ollama, vLLM, LM Studio, llama.cpp,
a proxy) or a provider's non-default address, and what to say when it cannot be reached.

An endpoint holds no secret itself: it names the environment variables that hold its key and
its headers' values, and they are read at each call (so a rotated key is picked up, and a
workflow can be built and validated without them). Every value read is registered with
`delegate._secrets`, so it never reaches a message, log, event, stored row or CLI line.

A *keyless* endpoint (`api_key_env=None`) is a server that wants no key: litellm is given a
harmless placeholder, so `openai/<model>` aimed at it does not ask for `OPENAI_API_KEY` — and
the key in the environment, if any, is never sent to it.
"""

from __future__ import annotations

import math
import os
import re
import types
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from delegate import _secrets
from delegate.errors import ConfigError, ProviderUnavailableError

if TYPE_CHECKING:
    from delegate.agents.models import Price

__all__ = [
    "KEYLESS_API_KEY",
    "Endpoint",
    "as_price",
    "check_base_url",
    "check_model_endpoint",
    "connection_error",
    "model_price",
    "redact_url",
]

KEYLESS_API_KEY = "no-key-required"
"""The key a keyless endpoint is sent: the OpenAI SDK refuses to send none, servers ignore it."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _env_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise ConfigError(
            f"{what} must be the name of an environment variable (letters, digits and '_', "
            f"e.g. LOCAL_LLM_KEY), got {value!r}; name the variable, never the key itself"
        )
    return value


def check_base_url(url: object) -> str | None:
    """Why `url` cannot be an endpoint's base URL, or None when it can."""
    if not isinstance(url, str) or not url.strip():
        return f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got {url!r}"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        return f"base_url {redact_url(url)!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"base_url {redact_url(url)!r} must be an http:// or https:// URL with a host, "
            "such as 'http://127.0.0.1:8000/v1'"
        )
    del port
    return None


def redact_url(url: str) -> str:
    """`url` as it may be shown: no user info, no query, known credentials masked."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        if "@" in parts.netloc:
            host = f"{_secrets.MASK}@{host}"
        shown = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        shown = url
    return _secrets.redact(shown)


def as_price(value: object) -> Price | None:
    """`value` (a `Price`, an (input, output) pair of USD per million tokens, or None) as a
    `Price`.

    Raises:
        ConfigError: not two finite numbers ≥ 0.
    """
    from delegate.agents.models import Price

    if value is None or isinstance(value, Price):
        return value
    pair = tuple(value) if isinstance(value, list | tuple) else ()
    if len(pair) == 2 and all(
        isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) and n >= 0
        for n in pair
    ):
        return Price(float(pair[0]), float(pair[1]))
    raise ConfigError(
        f"price must be (input_usd_per_million, output_usd_per_million), two numbers ≥ 0, got "
        f"{value!r}; a self-hosted model you do not pay per token is (0, 0)"
    )


def model_price(model: str, price: Price | tuple[float, float] | None) -> Price | None:
    """`LiteLLMModel(model, price=price)`'s price, checked (`as_price`), naming the model."""
    try:
        return as_price(price)
    except ConfigError as exc:
        raise ConfigError(f"model {model!r}: {exc}") from None


def check_model_endpoint(
    model: str, endpoint: object, *, api_base: str | None, api_key: str | None, **kwargs: Any
) -> None:
    """Refuse a `LiteLLMModel` given an endpoint that is not an `Endpoint`, or one and also
    `api_base`, `api_key` or a second `api_version`: where to send would be said twice."""
    if endpoint is None:
        return
    if not isinstance(endpoint, Endpoint):
        raise ConfigError(
            f"model {model!r}: endpoint must be a delegate Endpoint, got "
            f"{type(endpoint).__name__}; build one with Endpoint(base_url, ...)"
        )
    given = [name for name, value in (("api_base", api_base), ("api_key", api_key)) if value]
    if endpoint.api_version is not None and "api_version" in kwargs:
        given.append("api_version")
    if given:
        raise ConfigError(
            f"model {model!r}: {', '.join(given)} and endpoint= both say where to send; "
            "give the endpoint everything (Endpoint(base_url, api_key_env=..., "
            "api_version=...)), or drop endpoint="
        )


@dataclass(frozen=True, slots=True, init=False)
class Endpoint:
    """A server that answers a model's requests, and how to authenticate to it.

    Args:
        base_url: the server's base URL, e.g. "http://127.0.0.1:11434" (Ollama) or
            "http://127.0.0.1:8000/v1" (vLLM). Credentials in it are masked wherever it is shown.
        api_key_env: the environment variable holding the key, sent as the provider sends keys
            (`Authorization: Bearer` for OpenAI-compatible servers). None: the server wants no
            key (a placeholder is sent; the provider's key in the environment never is).
        api_version: the API version some providers ask for (Azure OpenAI).
        headers_env: extra headers, header name → the environment variable holding its value
            (masked everywhere, as every credential of at least 8 characters is).
        price: USD per million (input, output) tokens of the models it serves — a `Price` or a
            pair; (0, 0) for a model you do not pay per token. None: litellm's price for the
            model, if it has one (an unknown price is never taken as free).
        name: how messages name it ("local"); its URL otherwise.

    An environment variable it names that is not set is a `ConfigError` naming it, raised by
    the call that needs it (a model can be built, and a workflow validated, without it);
    `missing_env()` tells which are missing beforehand.

    Example::

        local = Endpoint("http://127.0.0.1:8000/v1", price=(0, 0), name="vllm")
        model = LiteLLMModel("hosted_vllm/Qwen/Qwen3-8B", endpoint=local)
    """

    base_url: str
    api_key_env: str | None
    api_version: str | None
    headers_env: Mapping[str, str]
    price: Price | None
    name: str | None

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None = None,
        api_version: str | None = None,
        headers_env: Mapping[str, str] | None = None,
        price: Price | tuple[float, float] | None = None,
        name: str | None = None,
    ) -> None:
        problem = check_base_url(base_url)
        label = f"endpoint {name!r}" if name else "endpoint"
        if problem is not None:
            raise ConfigError(f"{label}: {problem}")
        if api_key_env is not None:
            _env_name(api_key_env, f"{label}: api_key_env")
        if api_version is not None and (not isinstance(api_version, str) or not api_version):
            raise ConfigError(
                f"{label}: api_version must be a non-empty string, got {api_version!r}"
            )
        headers: dict[str, str] = {}
        for header, variable in (headers_env or {}).items():
            if not isinstance(header, str) or not _HEADER_NAME.match(header):
                raise ConfigError(
                    f"{label}: headers_env key {header!r} is not an HTTP header name; write "
                    "one such as X-Org-Id"
                )
            headers[header] = _env_name(variable, f"{label}: headers_env[{header!r}]")
        try:
            checked_price = as_price(price)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        set_ = object.__setattr__
        set_(self, "base_url", base_url.strip())
        set_(self, "api_key_env", api_key_env)
        set_(self, "api_version", api_version)
        set_(self, "headers_env", types.MappingProxyType(headers))
        set_(self, "price", checked_price)
        set_(self, "name", name)
        _secrets.register_url(self.base_url)

    def __hash__(self) -> int:
        return hash(
            (
                self.base_url,
                self.api_key_env,
                self.api_version,
                tuple(self.headers_env.items()),
                self.price,
                self.name,
            )
        )

    def __repr__(self) -> str:
        fields = [repr(redact_url(self.base_url))]
        for key in ("api_key_env", "api_version", "price", "name"):
            value = getattr(self, key)
            if value is not None:
                fields.append(f"{key}={value!r}")
        if self.headers_env:
            fields.append(f"headers_env={dict(self.headers_env)!r}")
        return f"Endpoint({', '.join(fields)})"

    @property
    def label(self) -> str:
        """How messages name it: "endpoint 'local'", or "endpoint http://host:port/v1"."""
        return f"endpoint {self.name!r}" if self.name else f"endpoint {redact_url(self.base_url)}"

    @property
    def keyless(self) -> bool:
        """True when the server wants no key (`api_key_env` is None)."""
        return self.api_key_env is None

    def env_names(self) -> list[str]:
        """Every environment variable it reads: its key's, then its headers'."""
        names = [] if self.api_key_env is None else [self.api_key_env]
        return names + [name for name in self.headers_env.values() if name not in names]

    def missing_env(self) -> list[str]:
        """The environment variables it reads that are not set (or are empty)."""
        return [name for name in self.env_names() if not os.environ.get(name)]

    def _read(self, variable: str, what: str) -> str:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(
                f"{self.label}: the environment variable {variable} ({what}) is not set; "
                f"export {variable}=..., or remove {what} if the server wants none"
            )
        _secrets.register(value)
        return value

    def arguments(self) -> dict[str, Any]:
        """The litellm arguments that send a request here: `api_base`, `api_key`, and
        `api_version` and `extra_headers` when it has them; values read from the environment.

        Raises:
            ConfigError: a variable it names is not set.
        """
        arguments: dict[str, Any] = {"api_base": self.base_url}
        if self.api_key_env is None:
            arguments["api_key"] = KEYLESS_API_KEY
        else:
            arguments["api_key"] = self._read(self.api_key_env, "its api_key_env")
        if self.api_version is not None:
            arguments["api_version"] = self.api_version
        if self.headers_env:
            arguments["extra_headers"] = {
                header: self._read(variable, f"its header {header}")
                for header, variable in self.headers_env.items()
            }
        return arguments


# --- connection failures -----------------------------------------------------------------------

# Why no connection was made, by the class names of the exceptions in the chain (httpx, aiohttp,
# the standard library), most telling first: (reason, what to check).
_FAILURES: tuple[tuple[frozenset[str], str, str], ...] = (
    (
        frozenset({"ConnectionRefusedError"}),
        "the connection was refused",
        "is the server running, and listening on that host and port?",
    ),
    (
        frozenset({"gaierror", "ClientConnectorDNSError"}),
        "its host name does not resolve",
        "is the host name right, and is this machine on the network that knows it?",
    ),
    (
        frozenset(
            {
                "SSLError",
                "SSLCertVerificationError",
                "ClientConnectorCertificateError",
                "ClientConnectorSSLError",
                "ClientSSLError",
            }
        ),
        "the TLS handshake failed",
        "does the server speak https with a certificate this machine trusts? (a local server "
        "usually wants http://)",
    ),
    (
        frozenset({"ConnectTimeout", "ConnectionTimeoutError"}),
        "no connection was made within the timeout",
        "is the server up, and is no firewall dropping the connection?",
    ),
    (
        frozenset({"ConnectError", "ClientConnectorError", "ConnectionError"}),
        "the connection failed",
        "is the server running, and is the URL right?",
    ),
)
_REQUEST_PATHS = ("/chat/completions", "/completions", "/messages", "/api/chat", "/api/generate")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        yield current
        linked = (
            current.__cause__,
            current.__context__,
            getattr(current, "original_exception", None),
        )
        pending.extend(item for item in linked if isinstance(item, BaseException))


def _request_url(chain: list[BaseException]) -> str | None:
    for item in chain:
        try:
            url = getattr(getattr(item, "request", None), "url", None)
        except RuntimeError:  # httpx: an error raised without its request
            continue
        if url is not None and "://" in str(url):
            text = str(url).split("?", 1)[0]
            for suffix in _REQUEST_PATHS:
                if text.endswith(suffix):
                    return text[: -len(suffix)]
            return text
    return None


def connection_error(
    exc: BaseException, *, model: str, base_url: str | None
) -> ProviderUnavailableError | None:
    """A `ProviderUnavailableError` saying which URL could not be reached and what to check,
    when `exc` (from litellm) is a failure to connect; None otherwise.

    Refused, unresolvable host, failed TLS handshake, connect timeout: no request left, so it
    is `delivery="not_sent"`; still transient (the server may come back). litellm's own text is
    kept only as the cause (masked of every known credential, as every provider error is).
    """
    chain = list(_chain(exc))
    names = {type(item).__name__ for item in chain}
    found = next(((r, c) for classes, r, c in _FAILURES if names & classes), None)
    if found is None:
        return None
    reason, check = found
    where = base_url or _request_url(chain)
    shown = redact_url(where) if where else "the provider's endpoint"
    curl = f" — try `curl {shown.rstrip('/')}/models`" if where else ""
    error = ProviderUnavailableError(
        f"{model or 'model'}: cannot reach {shown}: {reason}; {check}{curl}",
        model=model,
        delivery="not_sent",
    )
    error.__cause__ = exc
    return _secrets.scrub_error(error)
