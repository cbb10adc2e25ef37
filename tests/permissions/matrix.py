"""The permission matrix: every HTTP route of every service, and what each actor gets from it.

This table is the single source of ``tests/permissions/test_matrix.py`` (which calls every route as
every actor and checks the status and whether the request's personal data appear in the answer)
and of ``docs/permissions.md`` (``python -m tests.permissions.render``). A route without a row
fails the tests; so does a row whose route no longer exists.

The world the rows speak of (built in ``tests/permissions/world.py``): a Romanian regional college
of physicians (Cluj) answers requests from an Irish council. The college allocates its requests
(rule S8), is linked to the Romanian national college (S4), and has two request coordinators in
professional qualifications (S5): the national coordinator with full view and the Cluj delegated
coordinator without; the national coordinator approves the college's requests and replies (S15).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Actor(StrEnum):
    """Who calls. The column order of the documentation."""

    anonymous = "anonymous"
    basic = "basic"
    handler = "handler"
    other_area = "other_area"
    allocator = "allocator"
    lda = "lda"
    linked = "linked"
    coord_full = "coord_full"
    coord_overview = "coord_overview"
    other_country = "other_country"
    commission = "commission"


ACTOR_DESCRIPTIONS: dict[Actor, str] = {
    Actor.anonymous: "no access token",
    Actor.basic: "basic user of the college (no role in any area, rule S9)",
    Actor.handler: "request handler of the college in professional qualifications, the area of the requests",
    Actor.other_area: "request handler of the college in services only: a basic user in professional "
    "qualifications (S9)",
    Actor.allocator: "allocator of the college in professional qualifications, no other role (S8, E2)",
    Actor.lda: "local data administrator of the college, no other role (S9)",
    Actor.linked: "first user (every right) of the national college, linked to the college (S4)",
    Actor.coord_full: "first user (every right, data administrator) of the Romanian national coordinator, "
    "request coordinator of the college with full view (S5, S13)",
    Actor.coord_overview: "first user of the Cluj delegated coordinator, request coordinator of the college "
    "without full view (S5)",
    Actor.other_country: "first user (every right) of the Irish council, the other country's authority that "
    "sent the request (E1)",
    Actor.commission: "first user of the Commission (A3)",
}

AUTHENTICATED = tuple(a for a in Actor if a is not Actor.anonymous)
COLLEGE = (Actor.basic, Actor.handler, Actor.other_area, Actor.allocator, Actor.lda)
COORDINATORS = (Actor.coord_full, Actor.coord_overview)
# Rule S9 (E2 with allocation on): who acts for the two authorities in the exchange.
REQUEST_HANDLERS = (Actor.handler, Actor.allocator, Actor.other_country)


class Outcome(StrEnum):
    allowed = "allowed"  # the row's success status (2xx)
    forbidden = "forbidden"  # 403 forbidden
    hidden = "hidden"  # 404: the caller does not even learn that the object exists
    unauthenticated = "unauthenticated"  # 401 not_authenticated
    public = "public"  # no identity asked: the row's status whoever calls

    @property
    def symbol(self) -> str:
        return {"allowed": "✅", "forbidden": "403", "hidden": "404", "unauthenticated": "401", "public": "·"}[
            self.value
        ]


@dataclass(frozen=True)
class Row:
    """One route, called on one target, and what every actor gets."""

    service: str
    method: str
    path: str  # the route exactly as the service declares it
    target: str  # what the call is made on: a key of world.TARGETS, described in the docs
    outcomes: Mapping[Actor, Outcome]
    status: int = 200  # of an allowed (or public) call
    personal: frozenset[Actor] = frozenset()  # whose answer carries the request's personal data
    repeatable: bool = True  # False: an allowed call uses up its target, so it gets a fresh one
    note: str = ""
    rules: str = ""

    @property
    def id(self) -> str:
        return f"{self.service} {self.method} {self.path} [{self.target}]"


def allowed(*actors: Actor, others: Outcome = Outcome.forbidden, **exceptions: Outcome) -> dict[Actor, Outcome]:
    """``actors`` allowed, the anonymous caller 401, named exceptions as given, everyone else ``others``."""
    outcomes = {actor: others for actor in AUTHENTICATED}
    outcomes.update({actor: Outcome.allowed for actor in actors})
    outcomes.update({Actor(name): outcome for name, outcome in exceptions.items()})
    outcomes[Actor.anonymous] = Outcome.unauthenticated
    return outcomes


PUBLIC = {actor: Outcome.public for actor in Actor}
ANY_USER = allowed(*AUTHENTICATED)
COMMISSION_ONLY = allowed(Actor.commission)

# Who reaches a request of the Irish council to the college (access_of in services/exchange/views.py):
# the parties (full, P3), coordinators and the linked authority (details or overview, P4, S4, S5);
# anyone else gets 404 (the Commission is no party: P3).
HIDDEN_FROM_OUTSIDERS = {"commission": Outcome.hidden}


def _operational(service: str) -> list[Row]:
    return [
        Row(service, "GET", "/health/live", "none", PUBLIC, note="liveness probe"),
        Row(service, "GET", "/health/ready", "none", PUBLIC, note="readiness probe"),
        Row(service, "GET", "/metrics", "none", PUBLIC, note="Prometheus; scraped inside the cluster"),
        Row(
            service,
            "POST",
            "/_dev/clock",
            "clock",
            PUBLIC,
            status=409,
            note="mounted only outside production; 409 clock_fixed on the tests' frozen clock",
        ),
    ]


REGISTRY = [
    *_operational("registry"),
    Row("registry", "GET", "/.well-known/jwks.json", "none", PUBLIC, note="public keys only"),
    Row(
        "registry",
        "POST",
        "/auth/login",
        "wrong_password",
        PUBLIC,
        status=401,
        note="the credentials in the body decide; a bearer token grants nothing",
        rules="S12",
    ),
    Row("registry", "POST", "/auth/login/code", "unknown_challenge", PUBLIC, status=401, rules="S12"),
    Row("registry", "POST", "/auth/setup", "unknown_setup_token", PUBLIC, status=401, rules="S12"),
    Row("registry", "POST", "/auth/refresh", "unknown_refresh_token", PUBLIC, status=401),
    Row("registry", "POST", "/auth/logout", "unknown_refresh_token", PUBLIC, status=204),
    Row("registry", "GET", "/auth/me", "none", ANY_USER),
    Row(
        "registry",
        "POST",
        "/registrations",
        "invitation",
        PUBLIC,
        status=201,
        repeatable=False,
        note="the invitation token in the body is the permission",
    ),
    Row("registry", "GET", "/directory/authorities", "none", ANY_USER, rules="S1 Search, S9"),
    Row("registry", "GET", "/coordinators", "country", ANY_USER, rules="A2"),
    Row("registry", "GET", "/authorities/{authority_id}", "college", ANY_USER, rules="S1"),
    Row(
        "registry",
        "POST",
        "/authorities",
        "new_authority",
        allowed(*COORDINATORS),
        status=201,
        repeatable=False,
        note="a competent authority of Romania; the Commission registers national coordinators only",
        rules="A2, S13",
    ),
    Row(
        "registry",
        "POST",
        "/authorities/{authority_id}/validate",
        "pending_authority",
        allowed(*COORDINATORS),
        repeatable=False,
        rules="A2, S13",
    ),
    Row("registry", "PATCH", "/authorities/{authority_id}", "college", allowed(Actor.lda), rules="S1, S9"),
    Row(
        "registry",
        "PUT",
        "/authorities/{authority_id}/official-name",
        "college",
        allowed(*COORDINATORS),
        rules="S13",
    ),
    Row(
        "registry",
        "PUT",
        "/authorities/{authority_id}/translations/{language}",
        "college",
        allowed(Actor.commission),
        note="into English: the Commission provides the translations",
        rules="A3, S1",
    ),
    Row(
        "registry",
        "POST",
        "/authorities/{authority_id}/areas",
        "area_grant",
        allowed(*COORDINATORS),
        repeatable=False,
        rules="S13",
    ),
    Row(
        "registry",
        "POST",
        "/authorities/{authority_id}/links",
        "new_link",
        allowed(Actor.lda),
        repeatable=False,
        rules="S4",
    ),
    Row(
        "registry",
        "DELETE",
        "/authorities/{authority_id}/links/{linked_authority_id}",
        "link",
        allowed(Actor.lda),
        repeatable=False,
        rules="S4",
    ),
    Row(
        "registry",
        "PUT",
        "/authorities/{authority_id}/request-coordinators",
        "college",
        allowed(Actor.lda),
        rules="S5",
    ),
    Row(
        "registry",
        "DELETE",
        "/authorities/{authority_id}/request-coordinators/{area}/{coordinator_id}",
        "request_coordinator",
        allowed(Actor.lda),
        repeatable=False,
        rules="S5",
    ),
    Row(
        "registry",
        "POST",
        "/authorities/{authority_id}/deactivate",
        "authority_to_deactivate",
        allowed(*COORDINATORS),
        repeatable=False,
        rules="A2, S13",
    ),
    Row(
        "registry",
        "GET",
        "/authorities/{authority_id}/warnings",
        "college",
        allowed(Actor.lda, *COORDINATORS),
        rules="S7, S8",
    ),
    Row(
        "registry",
        "GET",
        "/authorities/{authority_id}/audit",
        "college",
        allowed(Actor.lda, *COORDINATORS),
    ),
    Row(
        "registry",
        "GET",
        "/authorities/{authority_id}/users",
        "college",
        allowed(*COLLEGE, *COORDINATORS),
        rules="S9, S13",
    ),
    Row(
        "registry",
        "POST",
        "/authorities/{authority_id}/users",
        "new_user",
        allowed(Actor.lda),
        status=201,
        repeatable=False,
        rules="S9, S10, S11",
    ),
    Row(
        "registry",
        "PUT",
        "/coordinators/{coordinator_id}/settings/{area}",
        "coordinator_settings",
        allowed(Actor.coord_full),
        note="the national coordinator's own settings",
        rules="S14, S15",
    ),
    Row(
        "registry",
        "POST",
        "/invitations",
        "new_invitation",
        allowed(*COORDINATORS),
        status=201,
        repeatable=False,
        rules="A2",
    ),
    Row("registry", "GET", "/users/{user_id}", "colleague", allowed(*COLLEGE, *COORDINATORS), rules="S9, S13"),
    Row(
        "registry",
        "PATCH",
        "/users/{user_id}",
        "colleague",
        allowed(Actor.lda, Actor.handler),
        note="the college's request handler changes his own data",
        rules="S9, S10",
    ),
    Row(
        "registry",
        "PUT",
        "/users/{user_id}/roles",
        "user_to_change",
        allowed(Actor.lda),
        repeatable=False,
        rules="S9",
    ),
    Row(
        "registry",
        "GET",
        "/users/{user_id}/username",
        "colleague",
        allowed(Actor.lda, *COORDINATORS),
        rules="S11, lost credentials",
    ),
    Row(
        "registry",
        "POST",
        "/users/{user_id}/password-reset",
        "user_to_change",
        allowed(Actor.lda),
        status=204,
        repeatable=False,
        note="a coordinator resets only the passwords of local data administrators (S13)",
        rules="lost credentials, S13",
    ),
    Row(
        "registry",
        "POST",
        "/users/{user_id}/deactivate",
        "user_to_change",
        allowed(Actor.lda),
        repeatable=False,
        rules="S9",
    ),
]

_SEES_REQUEST = allowed(*AUTHENTICATED, **HIDDEN_FROM_OUTSIDERS)
# Rules P3 and S9: of the two authorities, those who send and answer the request reach its personal
# data; their colleagues (basic users, handlers of other areas, data administrators) the overview.
_PARTY_PD = frozenset(REQUEST_HANDLERS)


def _on_request(
    method: str,
    path: str,
    target: str,
    *actors: Actor,
    status: int = 200,
    personal: tuple[Actor, ...] | None = None,
    note: str = "",
    rules: str = "",
    **exceptions: Outcome,
) -> Row:
    """An action on the Irish council's request to the college: parties not allowed get 403, so do the
    coordinators and the linked authority (they see it); the Commission gets 404 (it sees nothing)."""
    outcomes = allowed(*actors, **{**HIDDEN_FROM_OUTSIDERS, **exceptions})
    return Row(
        "exchange",
        method,
        path,
        target,
        outcomes,
        status=status,
        personal=frozenset(actors if personal is None else personal) & _PARTY_PD,
        repeatable=False,
        note=note,
        rules=rules,
    )


_DRAFT_OUTSIDERS = {
    a.value: Outcome.hidden
    for a in (Actor.linked, Actor.coord_full, Actor.coord_overview, Actor.other_country, Actor.commission)
}

EXCHANGE = [
    *_operational("exchange"),
    Row("exchange", "GET", "/question-sets", "none", ANY_USER, rules="E1"),
    Row(
        "exchange",
        "GET",
        "/requests",
        "college_received",
        allowed(*COLLEGE, Actor.linked, *COORDINATORS),
        note="the college's received requests: an overview, never personal data",
        rules="S4, S5, S9, P4",
    ),
    Row(
        "exchange",
        "GET",
        "/actions",
        "none",
        ANY_USER,
        note="each caller's own action list: references and deadlines only",
        rules="E5",
    ),
    Row("exchange", "GET", "/statistics", "none", ANY_USER, note="figures only"),
    Row(
        "exchange",
        "GET",
        "/requests/{request_id}",
        "request",
        _SEES_REQUEST,
        personal=_PARTY_PD,
        note="parties: everything; full-view coordinator: details without personal data; the other "
        "coordinator and the linked authority: overview",
        rules="P3, P4, S4, S5",
    ),
    Row(
        "exchange",
        "GET",
        "/requests/{request_id}",
        "request_between_others",
        allowed(*AUTHENTICATED, other_country=Outcome.hidden, commission=Outcome.hidden),
        personal=frozenset({Actor.handler, Actor.allocator}),
        note="a request of another Irish authority to the college: the Irish council is no party",
        rules="P3",
    ),
    Row(
        "exchange",
        "GET",
        "/requests/{request_id}",
        "request_awaiting_approval",
        allowed(*COLLEGE, Actor.linked, *COORDINATORS, other_country=Outcome.hidden, commission=Outcome.hidden),
        personal=frozenset({Actor.handler}),
        note="a request of the college waiting for its coordinator's approval has not reached the Irish council yet; "
        "on the requesting side the request handlers read it whole",
        rules="E3, P3",
    ),
    Row(
        "exchange",
        "GET",
        "/requests/{request_id}/attachments/{attachment_id}",
        "attachment",
        allowed(*REQUEST_HANDLERS, **HIDDEN_FROM_OUTSIDERS),
        personal=_PARTY_PD,
        note="an attachment is personal data: the parties' request handlers only",
        rules="P3, P4",
    ),
    Row(
        "exchange",
        "POST",
        "/requests",
        "new_draft",
        allowed(
            Actor.handler,
            Actor.linked,
            *COORDINATORS,
            Actor.other_country,
            Actor.commission,
        ),
        status=201,
        repeatable=False,
        note="a draft to another Irish authority; any authority's request handler writes one (the "
        "Commission's first user holds every role)",
        rules="E1, S9",
    ),
    Row(
        "exchange",
        "PATCH",
        "/requests/{request_id}",
        "draft",
        allowed(Actor.handler, **_DRAFT_OUTSIDERS),
        note="a draft of the college: its own authority's alone",
        rules="E1",
    ),
    Row(
        "exchange",
        "DELETE",
        "/requests/{request_id}",
        "draft",
        allowed(Actor.handler, **_DRAFT_OUTSIDERS),
        status=204,
        repeatable=False,
        rules="E1",
    ),
    Row(
        "exchange",
        "POST",
        "/requests/{request_id}/send",
        "draft",
        allowed(Actor.handler, **_DRAFT_OUTSIDERS),
        personal=frozenset({Actor.handler}),
        repeatable=False,
        note="goes to the national coordinator for approval first",
        rules="E1, E3",
    ),
    Row(
        "exchange",
        "POST",
        "/requests/{request_id}/approve",
        "request_awaiting_approval",
        allowed(Actor.coord_full, other_country=Outcome.hidden, commission=Outcome.hidden),
        repeatable=False,
        rules="E3, S15",
    ),
    Row(
        "exchange",
        "POST",
        "/requests/{request_id}/reject",
        "request_awaiting_approval",
        allowed(Actor.coord_full, other_country=Outcome.hidden, commission=Outcome.hidden),
        repeatable=False,
        rules="E3, S15",
    ),
    _on_request("POST", "/requests/{request_id}/withdraw", "received", Actor.other_country, rules="E1"),
    _on_request("POST", "/requests/{request_id}/accept", "received", Actor.handler, Actor.allocator, rules="E1, E2"),
    _on_request(
        "POST",
        "/requests/{request_id}/allocate",
        "received_unallocated",
        Actor.allocator,
        rules="E2, S8",
    ),
    _on_request(
        "POST",
        "/requests/{request_id}/forward",
        "received",
        Actor.handler,
        Actor.allocator,
        personal=(),
        note="to another Romanian authority; afterwards the college is no party",
        rules="E1",
    ),
    _on_request(
        "POST",
        "/requests/{request_id}/forward-questions",
        "in_progress",
        Actor.handler,
        Actor.allocator,
        status=201,
        personal=(),
        note="answers the new request's id only",
        rules="E1",
    ),
    _on_request("POST", "/requests/{request_id}/reply-date/proposal", "received", Actor.handler, Actor.allocator),
    _on_request("POST", "/requests/{request_id}/reply-date/answer", "reply_date_proposed", Actor.other_country),
    _on_request(
        "PUT",
        "/requests/{request_id}/answers",
        "in_progress",
        Actor.handler,
        Actor.allocator,
        note="with allocation on: the allocated handler and the allocators",
        rules="E1, E2",
    ),
    _on_request(
        "POST", "/requests/{request_id}/reply", "answered_in_progress", Actor.handler, Actor.allocator, rules="E1, E3"
    ),
    _on_request(
        "POST",
        "/requests/{request_id}/reply/approve",
        "reply_awaiting_approval",
        Actor.coord_full,
        rules="E3, S15, P4",
    ),
    _on_request(
        "POST",
        "/requests/{request_id}/reply/reject",
        "reply_awaiting_approval",
        Actor.coord_full,
        rules="E3, S15, P4",
    ),
    _on_request("POST", "/requests/{request_id}/close", "answered", Actor.other_country, rules="E1"),
    _on_request("POST", "/requests/{request_id}/additional-information", "answered", Actor.other_country, rules="E4"),
    _on_request(
        "POST",
        "/requests/{request_id}/additional-information/refusal",
        "information_requested",
        Actor.handler,
        Actor.allocator,
        rules="E4",
    ),
    _on_request("POST", "/requests/{request_id}/referral", "information_refused", Actor.other_country, rules="E4"),
    _on_request(
        "POST",
        "/requests/{request_id}/referral/opinion",
        "referred",
        *COORDINATORS,
        note="both request coordinators of the college are referred (referral: yes)",
        rules="E4, S14, P4",
    ),
    _on_request("POST", "/requests/{request_id}/reopen", "closed", Actor.other_country),
    _on_request(
        "POST",
        "/requests/{request_id}/comments",
        "in_progress",
        *REQUEST_HANDLERS,
        status=201,
        note="the parties' request handlers: a comment speaks for the authority (S9) and may hold personal data",
        rules="P3, S9",
    ),
    _on_request(
        "POST",
        "/requests/{request_id}/attachments",
        "in_progress",
        *REQUEST_HANDLERS,
        status=201,
        personal=(),
        note="the parties' request handlers; answers the attachment's metadata",
        rules="P3, S9",
    ),
]

NOTIFIER = [
    *_operational("notifier"),
    Row("notifier", "GET", "/deliveries", "none", COMMISSION_ONLY, rules="A3"),
    Row("notifier", "GET", "/deliveries/counts", "none", COMMISSION_ONLY, rules="A3"),
    Row("notifier", "GET", "/deliveries/{delivery_id}", "delivery", COMMISSION_ONLY, rules="A3"),
    Row(
        "notifier",
        "POST",
        "/deliveries/{delivery_id}/resend",
        "failed_delivery",
        COMMISSION_ONLY,
        repeatable=False,
        rules="A3",
    ),
]

RETENTION = [
    *_operational("retention"),
    Row("retention", "GET", "/retention/requests/{request_id}", "retention_request", COMMISSION_ONLY, rules="A3, P2"),
    Row("retention", "GET", "/retention/purges/upcoming", "within", COMMISSION_ONLY, rules="A3, P2"),
    Row("retention", "GET", "/retention/purges/overdue", "none", COMMISSION_ONLY, rules="A3, P2"),
    Row("retention", "GET", "/retention/report", "none", COMMISSION_ONLY, rules="A3, P2"),
    Row("retention", "GET", "/retention/log", "none", COMMISSION_ONLY, rules="A3, P2"),
    Row("retention", "GET", "/retention/log/verify", "none", COMMISSION_ONLY, rules="A3, P2"),
    Row("retention", "POST", "/retention/scheduler/run", "none", COMMISSION_ONLY, rules="A3, P2"),
]

# Where a service does not yet do what the rules say, (row id, actor) -> why, naming the code that
# decides: the tests expect those cases to fail (strict xfail, so a fix shows up as an unexpected
# pass) and the documentation marks them. None now: the three the matrix found first (a draft's
# existence leaking on PATCH/DELETE, a request awaiting approval visible to the responding side,
# comments and documents from users without the request handler role) are fixed in the exchange.
KNOWN_BUGS: dict[tuple[str, Actor], str] = {}

SERVICES: dict[str, list[Row]] = {
    "registry": REGISTRY,
    "exchange": EXCHANGE,
    "notifier": NOTIFIER,
    "retention": RETENTION,
}
ROWS: list[Row] = [row for rows in SERVICES.values() for row in rows]


@dataclass(frozen=True)
class Case:
    row: Row
    actor: Actor
    outcome: Outcome = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", self.row.outcomes[self.actor])

    @property
    def id(self) -> str:
        return f"{self.row.id} as {self.actor}"


def cases() -> list[Case]:
    return [Case(row, actor) for row in ROWS for actor in Actor]
