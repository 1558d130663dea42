"""A target profile (docs/targets.md): how surge's payments map onto a repayment API that surge did not build.

Validated once, before anything starts, so that a mistake is one line and exit 2 (`ProfileError`): an unknown
key, an unknown `{placeholder}`, a JSON pointer that is not RFC 6901, a rule set with no 2xx success, a
non-loopback `base_url` without --allow-remote, or a `${NAME}` the environment does not hold. Its parts live
beside it: the templates (profile_templates), the request (profile_request), the answers and settlement
(profile_answers) and the target's ledger (profile_ledger).
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from errortext.validation import describe
from loadtests.errors import UsageError
from loadtests.scenario.credentials import CredentialError, Signer, client_context, make_signer
from loadtests.scenario.parts import Strict
from loadtests.scenario.profile_answers import Response, SettleSpec
from loadtests.scenario.profile_ledger import LedgerSpec, check_database_scheme
from loadtests.scenario.profile_request import AuthSpec, RequestSpec, TlsSpec
from loadtests.scenario.profile_templates import (
    FIELD_VALUE,
    FRESH,
    MESSAGE_ONLY,
    NOTIFY_URL,
    WHOLE_ENV,
    ProfileError,
    parse_template,
)
from loadtests.scenario.targets import check_target
from runfolder.models import TargetCaps, TargetMeta


class TargetProfile(Strict):
    name: str = Field(min_length=1)
    """The target's name, shown in the report and the console."""
    base_url: str
    """Scheme, host and port of the API; `--host` overrides it; loopback only unless `--allow-remote`."""
    request: RequestSpec
    """How one payment attempt is sent."""
    response: Response
    """How an answer is read."""
    ledger: LedgerSpec | None = None
    """What the target recorded, for the money invariants; without it they are unknown."""
    auth: AuthSpec = AuthSpec()
    """How surge obtains credentials ([auth.oauth2])."""
    tls: TlsSpec = TlsSpec()
    """TLS settings for https: the CA to verify against, a client certificate."""
    settle: SettleSpec | None = None
    """How a payment answered `pending` learns its final state: `[settle.poll]` and/or `[settle.callback]`."""

    @model_validator(mode="after")
    def _token_known(self) -> TargetProfile:
        if self.auth.oauth2 is None:
            sources = [*self.request.templates().items()]
            if self.request.sign is not None:
                sources.append(("sign.message", parse_template(self.request.sign.message, "", FRESH | MESSAGE_ONLY)))
            for where, segments in sources:
                if ("var", "access_token") in segments:
                    raise ValueError(f"request {where}: {{access_token}} needs an [auth.oauth2] section")
        return self

    @model_validator(mode="after")
    def _settlement_consistent(self) -> TargetProfile:
        pending = [rule for rule in self.response.rules if rule.outcome == "pending"]
        settle = self.settle or SettleSpec()
        if pending and settle.poll is None and settle.callback is None:
            raise ProfileError("a response rule has outcome 'pending' but neither [settle.poll] nor [settle.callback]")
        if any(rule.payment_id is None for rule in pending) and settle.poll is not None:
            raise ProfileError("a response rule with outcome 'pending' needs payment_id (the id [settle.poll] asks)")
        uses_notify = any(kind == "var" and value == NOTIFY_URL for kind, value in self.request.templates()["body"])
        if uses_notify and settle.callback is None:
            raise ProfileError("request.body: {notify_url} needs [settle.callback] (the format the target posts)")
        if settle.callback is not None and not uses_notify:
            raise ProfileError("[settle.callback]: request.body has no {notify_url} placeholder to tell the target")
        return self

    def env_names(self) -> list[str]:
        """Every ${NAME} the profile reads from the environment, in order of appearance."""
        names: list[str] = []
        sources = [*self.request.templates().values()]
        sign = self.request.sign
        if sign is not None:
            sources.append(parse_template(sign.message, "request.sign.message", FRESH | MESSAGE_ONLY))
            if sign.key is not None:
                sources.append(parse_template(sign.key, "request.sign.key"))
        oauth2 = self.auth.oauth2
        if oauth2 is not None:
            for value in (oauth2.token_url, oauth2.client_id, oauth2.client_secret):
                sources.append(parse_template(value, "auth.oauth2", frozenset()))
        if self.ledger is not None:
            sources.append(parse_template(self.ledger.url, "ledger.url"))
        if self.settle is not None and self.settle.poll is not None:
            sources += list(self.settle.poll.templates().values())
        if self.settle is not None and self.settle.callback is not None:
            sources.append(parse_template(self.settle.callback.secret, "settle.callback.secret"))
        for segments in sources:
            names += [value for kind, value in segments if kind == "env" and value not in names]
        return names


def check_settlement(profile: TargetProfile, mode: str) -> None:
    """ProfileError unless the scenario's `[client] settlement` can watch what the profile's rules leave
    pending: `poll` needs `[settle.poll]`, `callback` needs `[settle.callback]`."""
    pending = any(rule.outcome == "pending" for rule in profile.response.rules)
    settle = profile.settle or SettleSpec()
    if pending and mode == "poll" and settle.poll is None:
        raise ProfileError('[client] settlement = "poll" but the profile has no [settle.poll]')
    if pending and mode == "callback" and settle.callback is None:
        raise ProfileError('[client] settlement = "callback" but the profile has no [settle.callback]')
    if mode != "callback" and settle.callback is not None:
        raise ProfileError('the profile\'s [settle.callback] needs [client] settlement = "callback" ({notify_url})')


def load_profile(
    path: Path | str, *, allow_remote: bool, host: str | None = None, env: Mapping[str, str] | None = None
) -> TargetProfile:
    """Read and validate a profile; `host` (--host) overrides `base_url`, which the loopback guard checks.

    `env` (default: none checked) is the environment the run will have: each ${NAME} must be set in it.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"target profile {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"target profile {path}: invalid TOML ({exc})") from None
    if host is not None:
        data["base_url"] = host
    try:
        profile = TargetProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"target profile {path}: {describe(exc)}") from None
    except ProfileError as exc:
        raise ProfileError(f"target profile {path}: {exc}") from None
    try:
        base_url = check_target(profile.base_url, allow_remote=allow_remote)
    except UsageError as exc:
        raise ProfileError(f"target profile {path}: base_url: {str(exc).removeprefix('--host ')}") from None
    oauth2 = profile.auth.oauth2
    if oauth2 is not None and "${" not in oauth2.token_url:
        try:
            check_target(oauth2.token_url, allow_remote=allow_remote)
        except UsageError as exc:
            why = str(exc).removeprefix("--host ")
            raise ProfileError(f"target profile {path}: auth.oauth2.token_url: {why}") from None
    profile = _files_resolved(profile.model_copy(update={"base_url": base_url}), path.parent)
    if env is not None:
        missing = [name for name in profile.env_names() if name not in env]
        if missing:
            raise ProfileError(f"target profile {path}: ${{{missing[0]}}} is not set in the environment")
        for name, value in profile.request.headers.items():  # sent as they are: the rest are escaped where they land
            for kind, variable in parse_template(value, f"request.headers.{name}"):
                if kind == "env" and not FIELD_VALUE.fullmatch(env[variable]):
                    raise ProfileError(
                        f"target profile {path}: request.headers.{name}: ${{{variable}}} holds a control character"
                        " (CR, LF, …) or a character outside Latin-1"
                    )
        whole = WHOLE_ENV.fullmatch(profile.ledger.url.strip()) if profile.ledger is not None else None
        if whole:
            try:
                check_database_scheme(env.get(whole.group(1), ""))
            except ValueError:  # its value may be a secret: never shown
                raise ProfileError(
                    f"target profile {path}: ledger.url: ${{{whole.group(1)}}} does not hold a postgresql://, "
                    "mysql:// or sqlite:/// URL"
                ) from None
        try:
            signer(profile, env, path.parent)
            if uses_tls(profile):
                tls_context(profile, ssl.SSLContext)
        except CredentialError as exc:
            raise ProfileError(f"target profile {path}: {exc}") from None
    return profile


def _files_resolved(profile: TargetProfile, folder: Path) -> TargetProfile:
    """key_file and the [tls] files relative to the profile's folder, as a payment engineer writes them."""

    def resolved(name: str | None) -> str | None:
        return None if name is None else str(folder / Path(name).expanduser())

    sign = profile.request.sign
    if sign is not None and sign.key_file is not None:
        sign = sign.model_copy(update={"key_file": resolved(sign.key_file)})
        profile = profile.model_copy(update={"request": profile.request.model_copy(update={"sign": sign})})
    tls = profile.tls
    files = {name: resolved(getattr(tls, name)) for name in ("ca_file", "cert_file", "key_file")}
    return profile.model_copy(update={"tls": tls.model_copy(update=files)})


def signer(profile: TargetProfile, env: Mapping[str, str], folder: Path | None) -> Signer | None:
    """The profile's request signer (None without [request.sign]); CredentialError when it cannot be made.
    `folder`: where a python `function`'s module may live (the profile's folder)."""
    sign = profile.request.sign
    if sign is None:
        return None
    return make_signer(
        sign.algorithm,
        key=sign.key,
        key_file=sign.key_file,
        encoding=sign.encoding,
        function=sign.function,
        env=env,
        search=folder,
    )


def uses_tls(profile: TargetProfile) -> bool:
    """Whether the profile talks https (base_url or token_url) or names TLS files."""
    tls, oauth2 = profile.tls, profile.auth.oauth2
    urls = [profile.base_url] if oauth2 is None else [profile.base_url, oauth2.token_url]
    return any(url.startswith("https:") for url in urls) or any((tls.ca_file, tls.cert_file, tls.key_file))


def tls_context(profile: TargetProfile, factory: type[ssl.SSLContext]) -> ssl.SSLContext:
    """The client TLS context of the profile's [tls] (verification on by default)."""
    tls = profile.tls
    return client_context(
        ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file, verify=tls.verify, factory=factory
    )


def target_meta(profile: TargetProfile, path: Path | str, channels: list[str]) -> TargetMeta:
    """meta.json's `target`: what the reports need (name, caps, the channels cards were drawn on), and nothing
    secret — no header values, no body, no ledger URL."""
    caps = None if profile.ledger is None else TargetCaps(**profile.ledger.caps.model_dump())
    return TargetMeta(
        name=profile.name,
        profile=str(path),
        base_url=profile.base_url,
        ledger=profile.ledger is not None,
        caps=caps,
        channels=channels,
    )
