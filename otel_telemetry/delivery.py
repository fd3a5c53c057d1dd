"""One check for every HTTP URL the SDK is given: the API principal, OTLP endpoints, alert webhooks."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def check_http_url(owner: str, field: str, value: object, *, base: bool = True) -> tuple[str, SplitResult]:
    """Validate an ``http://`` or ``https://`` URL with a host; return it (stripped) and its parts.

    A URL carrying credentials (``user:password@``) is refused without echoing it: secrets go in the token, and
    the URL is shown in reprs and logs. ``base=True`` (a base URL such as the principal's) also refuses a query
    string or fragment and drops a trailing slash. Errors are ``ValueError("{owner}.{field}: ...")``.
    """
    if not isinstance(value, str):
        raise ValueError(f"{owner}.{field}: expected an http:// or https:// URL, got {value!r}")
    text = value.strip()
    if base:
        text = text.rstrip("/")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{owner}.{field}: must not carry credentials (user:password@); use the token (value not shown)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{owner}.{field}: expected an http:// or https:// URL with a host, got {value!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{owner}.{field}: has an invalid port, got {value!r}") from None
    if base and (parts.query or parts.fragment):
        raise ValueError(f"{owner}.{field}: must not carry a query string or fragment, got {value!r}")
    return text, parts
