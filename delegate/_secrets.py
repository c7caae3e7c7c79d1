"""The credentials delegate knows, and the one function that masks them in text.

delegate knows two kinds of credentials:

- values registered with `register*`: `LiteLLMModel`'s `api_key`, the values of its auth-like
  `extra_headers` (a scheme such as "Bearer " stripped), credentials inside its `api_base` URL
  (userinfo, or a `key=`-like query parameter) and its credential keyword arguments
  (`aws_secret_access_key=`, `azure_ad_token=`, ...);
- the environment variables litellm reads credentials from (`OPENAI_API_KEY`,
  `ANTHROPIC_API_KEY`, `AWS_SECRET_ACCESS_KEY`, `AZURE_AD_TOKEN`, ...: `is_secret_env_name`),
  and passwords in URL-valued variables. They are read when text is redacted, and re-read
  whenever the environment changed, so a key exported after delegate was imported is masked too.

`redact(text)` masks all of them in one pass of one compiled regex (the longest value first),
in their raw, JSON-escaped and URL-encoded forms. Only values of at least `MIN_LENGTH`
characters are masked, and only as whole tokens — not inside a longer run of letters and digits
— so that masking cannot mangle ordinary text ("Traceback" stays whole whatever the key).

The model boundary (`delegate.errors.from_litellm`, through `scrub_error`) redacts every
provider error; the structlog processor, the store writer and the CLI's output streams redact
again (defence in depth).
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, TypeVar

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "RedactingStream",
    "holds_secret",
    "is_secret_env_name",
    "is_secret_key",
    "json_redactor",
    "known",
    "redact",
    "redact_json",
    "register",
    "register_headers",
    "register_kwargs",
    "register_url",
    "scrub_error",
]

MASK = "***"
"""What a masked value is replaced with."""

MIN_LENGTH = 8
"""Shorter values are never masked: they would match ordinary words."""

# Key names whose values are credentials. Anchored at the end so that token *counts*
# ("input_tokens", "max_tokens", "token_count") are never masked.
_SECRET_KEY = re.compile(
    r"(?:^|[_\-. ])(?:api[_\-]?key|apikey|secret[_\-]?key|private[_\-]?key|access[_\-]?key"
    r"|subscription[_\-]?key|authorization|token|secret|password|passwd|credentials?)$",
    re.IGNORECASE,
)

# Environment variables holding credentials, as litellm names them: OPENAI_API_KEY,
# WATSONX_APIKEY, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AZURE_AD_TOKEN, HF_TOKEN,
# ANTHROPIC_AUTH_TOKEN, AZURE_CLIENT_SECRET, RUNWAYML_API_SECRET, REDIS_PASSWORD,
# LITELLM_MASTER_KEY, ... Never their neighbours: OPENAI_API_BASE, AWS_REGION_NAME,
# AWS_ACCESS_KEY_ID, *_TOKEN_FILE.
_SECRET_ENV = re.compile(
    r"(?:_API_?KEY|_SECRET|_SECRET_(?:ACCESS_)?KEY|_TOKEN|_PASSWORD"
    r"|_(?:MASTER|SALT|ACCOUNT|APP|LICENSE|INGESTION|SUBSCRIPTION)_KEY)$"
    r"|^(?:AIMLAPI_KEY|COMETAPI_KEY|SUPABASE_KEY|WATSONX_ZENAPIKEY|AWS_BEARER_TOKEN_BEDROCK)$",
    re.IGNORECASE,
)

# Query parameters of a URL that carry credentials (Gemini's `?key=`, signed URLs' `sig=`).
_SECRET_QUERY = frozenset({"key", "code", "sig", "signature", "auth"})

# Values that look like credentials wherever they appear, known to delegate or not: masked in
# messages and logs (`redact(..., lookalikes=True)`), never in stored user data.
_LOOKALIKES = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza" + MASK),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE), r"\1 " + MASK),
)

# An auth header's value may start with its scheme ("Bearer abc", "Basic dXNl...").
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*\s+(\S.*)$", re.DOTALL)

_lock = threading.Lock()
_registered: set[str] = set()
_environ_seen: dict[Any, Any] | None = None
_from_environ: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None
_stale = True


def is_secret_key(key: str) -> bool:
    """True when a key named `key` (e.g. "api_key", "Authorization", "x-api-key") holds a
    credential."""
    return bool(_SECRET_KEY.search(key))


def is_secret_env_name(name: str) -> bool:
    """True when the environment variable `name` holds a credential (OPENAI_API_KEY, ...)."""
    return bool(_SECRET_ENV.search(name))


def register(*values: object) -> None:
    """Mask each of `values` from now on; values that are not strings of at least `MIN_LENGTH`
    characters (surrounding whitespace aside) are ignored."""
    global _stale
    new = {secret for value in values for secret in _candidates(value)} - _registered
    if new:
        with _lock:
            _registered.update(new)
            _stale = True


def register_headers(headers: object) -> None:
    """Mask the values of the auth-like headers in `headers` (Authorization, x-api-key,
    api-key, Cookie, ...), with their scheme ("Bearer ") stripped."""
    if not isinstance(headers, Mapping):
        return
    for name, value in headers.items():
        if isinstance(name, str) and isinstance(value, str) and _is_auth_header(name):
            register(*_header_secrets(value))


def register_url(url: object) -> None:
    """Mask the credentials inside `url`: its userinfo and credential query parameters."""
    register(*_url_secrets(url, username=True))


def register_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Mask the credentials among litellm keyword arguments: values of credential-named ones
    (`aws_secret_access_key`, `azure_ad_token`, ...), auth-like `extra_headers`/`headers`, and
    the credentials of URL-valued ones (`api_base`, `base_url`)."""
    for name, value in kwargs.items():
        if name in ("extra_headers", "headers"):
            register_headers(value)
        elif is_secret_key(name):
            register(value)
        elif isinstance(value, str) and "://" in value:
            register_url(value)


def known() -> frozenset[str]:
    """Every value masked right now: those registered and those in the environment."""
    _refresh()
    with _lock:
        return frozenset(_registered | _from_environ)


def redact(text: str, extra: Iterable[str] = (), *, lookalikes: bool = False) -> str:
    """`text` with every known credential (and each of `extra`) masked as "***".

    Args:
        text: any text that may be shown, logged or stored.
        extra: more values to mask in this call only (at least `MIN_LENGTH` characters each).
        lookalikes: also mask what merely looks like a credential (`sk-...`, `AIza...`,
            `Bearer ...`), known or not: for messages and logs, not for user data.
    """
    pattern = _current()
    if extra:
        more = frozenset(secret for value in extra for secret in _candidates(value))
        if more:
            pattern = _compile(known() | more)
    if pattern is not None and text:
        text = pattern.sub(MASK, text)
    if lookalikes:
        for lookalike, replacement in _LOOKALIKES:
            text = lookalike.sub(replacement, text)
    return text


def holds_secret(text: str, *, lookalikes: bool = False) -> bool:
    """True when `text` holds a known credential (or, with `lookalikes`, something like one)."""
    return redact(text, lookalikes=lookalikes) != text


def redact_json(text: str) -> str:
    """JSON text with every known credential masked inside its strings; still valid JSON."""
    return _redact_json_with(_current(), text)


def json_redactor() -> Callable[[str], str]:
    """`redact_json` for the credentials known now: one look-up for a batch of rows (a store's
    writer encodes thousands a second; the environment is checked once per batch, not per row)."""
    pattern = _current()
    if pattern is None:
        return _unchanged
    return functools.partial(_redact_json_with, pattern)


def _unchanged(text: str) -> str:
    return text


def _redact_json_with(pattern: re.Pattern[str] | None, text: str) -> str:
    if pattern is None or pattern.search(text) is None:
        return text
    masked = pattern.sub(MASK, text)
    try:
        json.loads(masked)
    except ValueError:
        # A credential matched across JSON syntax or as a number: mask inside strings only.
        return json.dumps(_redact_strings(json.loads(text)), ensure_ascii=False)
    return masked


E = TypeVar("E", bound=BaseException)


def scrub_error(error: E) -> E:
    """`error` with every known credential masked from its message; its `__cause__` dropped
    (and its context suppressed) when any exception in the cause's chain holds one.

    Look-alikes (`sk-...`, `Bearer ...`) count too: they are masked in the message, and a cause
    holding one is dropped. A cause is checked through its message, args, string attributes
    (`message`, `body`, ...), its response's text and the exceptions it holds or was raised from.
    """
    error.args = tuple(
        redact(arg, lookalikes=True) if isinstance(arg, str) else arg for arg in error.args
    )
    cause = error.__cause__
    if cause is not None and any(holds_secret(text, lookalikes=True) for text in _texts(cause)):
        error.__cause__ = None
        error.__suppress_context__ = True
        error.add_note(f"({type(cause).__name__} from the provider is not chained: it held a key)")
    return error


class RedactingStream:
    """A text stream that masks every known credential in what is written to the one it wraps.

    Everything else (`flush`, `isatty`, `fileno`, `encoding`, ...) is the wrapped stream's, so
    rich's live view still sees a terminal.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write `text`, credentials masked; `len(text)`, as if written unchanged."""
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of `lines`, credentials masked."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- internals ----------------------------------------------------------------------------------


def _candidates(value: object) -> set[str]:
    if not isinstance(value, str):
        return set()
    return {form for form in (value, value.strip()) if len(form) >= MIN_LENGTH}


def _is_auth_header(name: str) -> bool:
    lowered = name.lower()
    return is_secret_key(lowered) or lowered in ("cookie", "proxy-authorization", "x-auth")


def _header_secrets(value: str) -> list[str]:
    value = value.strip()
    scheme = _SCHEME.match(value)
    return [scheme.group(1).strip()] if scheme else [value]


def _url_secrets(url: object, *, username: bool) -> list[str]:
    if not isinstance(url, str) or "://" not in url:
        return []
    try:
        parts = urllib.parse.urlsplit(url.strip())
        secrets = []
        if parts.password:
            secrets.append(parts.password)
        elif username and parts.username:
            secrets.append(parts.username)  # a token as the user name: https://TOKEN@host
        for name, value in urllib.parse.parse_qsl(parts.query):
            if name.lower() in _SECRET_QUERY or is_secret_key(name):
                secrets.append(value)
    except ValueError:  # not a URL after all (a bad port, brackets)
        return []
    # The raw (still percent-encoded) forms as well: that is how a URL shows in messages.
    return secrets + [urllib.parse.quote(secret, safe="") for secret in secrets]


def _environ_data() -> Mapping[Any, Any]:
    # os.environ's own dict (bytes on POSIX): comparing it with a copy takes half a microsecond;
    # decoding every variable would take twenty.
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else os.environ


def _scan_environ(snapshot: Mapping[Any, Any]) -> frozenset[str]:
    secrets: set[str] = set()
    for raw_name, raw_value in snapshot.items():
        name, value = os.fsdecode(raw_name), os.fsdecode(raw_value)
        if is_secret_env_name(name):
            secrets.update(_candidates(value))
        elif "://" in value:  # OPENAI_API_BASE=https://user:pass@proxy, HTTPS_PROXY, ...
            for secret in _url_secrets(value, username=False):
                secrets.update(_candidates(secret))
    return frozenset(secrets)


def _refresh() -> None:
    """Re-read the environment's credentials if the environment changed since the last read."""
    global _environ_seen, _from_environ, _stale
    data = _environ_data()
    if data == _environ_seen:
        return
    seen = dict(data)  # a copy: scanned while other threads may change the environment
    found = _scan_environ(seen)
    with _lock:
        _environ_seen = seen
        if found != _from_environ:
            _from_environ = found
            _stale = True


def _current() -> re.Pattern[str] | None:
    """The pattern of every known credential, or None when there is none."""
    global _pattern, _stale
    _refresh()
    if _stale:
        with _lock:
            _pattern = _compile(frozenset(_registered | _from_environ))
            _stale = False
    return _pattern


def _forms(secret: str) -> Iterator[str]:
    yield secret
    yield json.dumps(secret)[1:-1]  # how it reads inside JSON text
    yield json.dumps(secret, ensure_ascii=False)[1:-1]
    yield urllib.parse.quote(secret, safe="")  # and inside a URL


@functools.lru_cache(maxsize=32)
def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets for form in _forms(secret) if len(form) >= MIN_LENGTH}
    if not forms:
        return None
    alternatives = "|".join(re.escape(form) for form in sorted(forms, key=lambda f: (-len(f), f)))
    # Whole tokens only: a value is not masked inside a longer run of letters and digits.
    return re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(key): _redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    return value


def _texts(exc: BaseException) -> Iterator[str]:
    """The texts an exception chain can show: messages, args, string attributes, response
    bodies; bounded, each exception once."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield from _exception_texts(current)
        attributes = vars(current).values() if hasattr(current, "__dict__") else ()
        # What it was raised from, and exceptions it holds (litellm's original_exception).
        pending.extend(
            linked
            for linked in (current.__cause__, current.__context__, *attributes)
            if isinstance(linked, BaseException)
        )


def _exception_texts(exc: BaseException) -> Iterator[str]:
    attributes = vars(exc) if hasattr(exc, "__dict__") else {}
    try:
        yield str(exc)
        yield repr(exc)
        yield from (str(arg) for arg in exc.args)
        for value in attributes.values():
            if isinstance(value, str | bytes | Mapping | list | tuple):
                yield str(value)
        text = getattr(getattr(exc, "response", None), "text", None)
    except Exception:  # a broken __str__, an unread streamed response: nothing shown either
        return
    if isinstance(text, str):
        yield text
