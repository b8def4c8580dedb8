"""Any endpoint litellm knows: ``openai/gpt-4o-mini``, ``anthropic/...``, ``ollama/llama3``,
``hosted_vllm/...`` or ``openai/NAME`` with ``api_base`` for any OpenAI-compatible server.

litellm's own retries are switched off: the client retries with its own policy (backoff,
jitter, Retry-After) so every backend fails and recovers the same way.
"""

from __future__ import annotations

import email.utils
import os
import socket
import time
from typing import Any

from agentopt.errors import LMError, UserError
from agentopt.lm.backends.base import Backend, Reply, TransientError
from agentopt.lm.request import ChatRequest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the price table ships with litellm


def _litellm() -> Any:
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def _retry_after(exc: Exception) -> float | None:
    """The server's Retry-After hint in seconds (a number or an HTTP date), if it sent one.

    litellm keeps the real reply headers in ``litellm_response_headers``; the ``response`` it
    attaches to a RateLimitError is often a stand-in with no headers at all.
    """
    candidates = [getattr(exc, "litellm_response_headers", None), getattr(exc, "headers", None),
                  getattr(getattr(exc, "response", None), "headers", None)]
    for headers in candidates:
        value = headers.get("retry-after") if hasattr(headers, "get") else None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


class RemoteBackend(Backend):
    def __init__(self, model: str) -> None:
        self.model = model

    def check(self, transport: dict[str, Any]) -> None:
        litellm = _litellm()
        try:
            _, provider, _, _ = litellm.get_llm_provider(self.model, api_base=transport.get("api_base"))
        except Exception as exc:  # litellm raises its BadRequestError subclass here
            raise UserError(
                f"unknown model {self.model!r}: use a litellm model string such as "
                "openai/gpt-4o-mini, or local/smollm2-135m for the embedded model"
            ) from exc
        if transport.get("api_base") or transport.get("api_key"):
            return  # a self-hosted endpoint: a key may not be needed
        env = litellm.validate_environment(model=self.model)
        missing = env.get("missing_keys") or []
        if missing:
            raise UserError(
                f"model {self.model!r} ({provider}) needs {', '.join(missing)} set in the environment"
            )

    def complete(self, request: ChatRequest, transport: dict[str, Any]) -> Reply:
        litellm = _litellm()
        kwargs = dict(request.params)
        kwargs.update({k: v for k, v in transport.items() if v is not None})
        constraint = kwargs.pop("constraint", None)
        if constraint:
            kwargs.update(_structured_output(constraint, self_hosted=bool(kwargs.get("api_base"))))
        if kwargs.get("api_base") and not kwargs.get("api_key"):
            # OpenAI-compatible local servers ignore the key but the client insists on one.
            # Only a stand-in, though: when the provider's key variable is set, litellm sends
            # it (a gateway or a vLLM started with --api-key needs it).
            missing = litellm.validate_environment(model=self.model).get("missing_keys") or []
            if any("KEY" in name for name in missing):
                kwargs["api_key"] = "sk-no-key-needed"
        try:
            response = litellm.completion(
                model=self.model,
                messages=[m.wire() for m in request.messages],
                num_retries=0,
                max_retries=0,
                **kwargs,
            )
        except Exception as exc:
            raise _classify(exc, litellm) from exc
        return _to_reply(response, litellm)


def _structured_output(constraint: dict[str, Any], *, self_hosted: bool) -> dict[str, Any]:
    """litellm arguments that ask an endpoint to decode only what ``constraint`` accepts.

    A JSON schema goes as OpenAI's ``response_format``, which litellm maps for other providers.
    A regex has no OpenAI form: self-hosted servers get it as vLLM's ``guided_regex`` and as a
    llama.cpp ``grammar``; hosted APIs cannot take it, which is an error, not a silent drop."""
    if "json_schema" in constraint:
        schema = {"name": "action", "schema": constraint["json_schema"]}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if not self_hosted:
        raise UserError("this endpoint cannot constrain replies to a regex: use --api-base with a "
                        "vLLM or llama.cpp server, a local model, or a task with a JSON-schema grammar")
    from agentopt.lm.grammar import regex_to_gbnf

    regex = constraint["regex"]
    return {"extra_body": {"guided_regex": regex, "grammar": regex_to_gbnf(regex)}}


def _classify(exc: Exception, litellm: Any) -> Exception:
    ex = litellm.exceptions
    message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    reason = _unreachable_reason(exc)
    if reason is not None:
        return TransientError(message, unreachable=True, reason=reason)
    if isinstance(exc, ex.RateLimitError):
        return TransientError(message, retry_after=_retry_after(exc))
    if isinstance(exc, ex.Timeout):
        return TransientError(message, timed_out=True)
    if isinstance(exc, ex.APIConnectionError):
        # Connection refused, DNS failure, or a reply that could not be parsed.
        return TransientError(message)
    if isinstance(exc, ex.AuthenticationError | ex.PermissionDeniedError):
        return UserError(f"authentication failed: {message}")
    if isinstance(exc, ex.NotFoundError):
        return UserError(f"model or endpoint not found: {message}")
    if isinstance(exc, ex.ContextWindowExceededError | ex.ContentPolicyViolationError):
        return LMError(message)
    if isinstance(exc, ex.BadRequestError):
        return LMError(message)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return TransientError(message)
    if isinstance(exc, ex.APIError):
        # litellm surfaces a malformed body from the server (bad JSON, missing fields) as this.
        return TransientError(message)
    # TypeError, ValueError, KeyError and the rest come from the request we built or from a
    # bug, not from a flaky server: asking again would fail the same way, six times over.
    return LMError(message)


def _unreachable_reason(exc: BaseException) -> str | None:
    """Why no connection could be made, when the cause chain shows it never was: ``"the name
    does not resolve"`` (DNS) or ``"connection refused"``; None when one was made."""
    seen: BaseException | None = exc
    refused = False
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "the name does not resolve"
        if isinstance(seen, ConnectionRefusedError) or type(seen).__name__ == "ConnectError":
            refused = True
            if any(hint in str(seen) for hint in _DNS_HINTS):
                return "the name does not resolve"
        seen = seen.__cause__ or seen.__context__
    return "connection refused" if refused else None


# What resolvers say when a name does not resolve, for a chain that kept only the message.
_DNS_HINTS = ("Name or service not known", "nodename nor servname", "Temporary failure in name resolution",
              "No address associated with hostname", "getaddrinfo failed")


def _tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    """The reply's tool calls as plain OpenAI-shaped dicts (litellm gives its own objects)."""
    if not calls:
        return None
    out = []
    for call in calls:
        data = call.model_dump() if hasattr(call, "model_dump") else dict(call)
        out.append({k: v for k, v in data.items() if v is not None})
    return out


def _to_reply(response: Any, litellm: Any) -> Reply:
    try:
        choice = response.choices[0]
        text = choice.message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise TransientError("malformed reply: no choices") from exc
    tool_calls = _tool_calls(getattr(choice.message, "tool_calls", None))
    if text is None and not tool_calls:
        raise TransientError("malformed reply: empty message")
    usage = getattr(response, "usage", None)
    details = getattr(usage, "prompt_tokens_details", None)  # OpenAI's prompt-cache hits
    try:
        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # no price for this model (local or unknown): it costs nothing we know of
        cost = 0.0
    return Reply(
        text=text or "",
        tool_calls=tool_calls,
        finish_reason=getattr(choice, "finish_reason", None),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_prompt_tokens=int(getattr(details, "cached_tokens", 0) or 0),
        cost_usd=cost,
    )
