"""The guide, end to end, over the services' HTTP APIs: what ``imi demo`` shows a newcomer and what
the end-to-end tests check (issue 7). National coordinators of Romania and Ireland are
bootstrapped; a Romanian regional college of physicians is registered, validated and set up by its
first user; an Irish request handler finds it in English and asks about a doctor; the request runs
through allocation, answer, additional information, refusal and referral to its closure; six months
and a day later its personal data are gone.

Nothing here reaches into a database: everything goes through the APIs a front-end would use, and
the e-mails the notifier sends (read from a Maildir the local SMTP sink writes).
"""

from __future__ import annotations

import asyncio
import mailbox
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx

from shared.settings import Settings

PQ = "professional_qualifications"
PASSWORD_PATTERN = re.compile(r"\b([A-Za-z0-9]{15}[!#%+=?])\s*$", re.MULTILINE)
SUBJECT_MARKER = "Ó Briain-Marker"  # the professional's family name: personal data to follow to its end


class JourneyError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoints:
    registry: str = "http://127.0.0.1:8001"
    exchange: str = "http://127.0.0.1:8002"
    notifier: str = "http://127.0.0.1:8003"
    retention: str = "http://127.0.0.1:8004"


MAILDIR_KEY = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)")


def arrival(key: str) -> tuple[float, ...]:
    """Where a Maildir key puts its message in arrival order: Python's mailbox (which aiosmtpd's
    Mailbox handler uses) names each file ``<seconds>.M<microseconds>P<pid>Q<counter>.<host>``. The
    Date header has whole seconds only, too coarse for the e-mails of one step."""
    match = MAILDIR_KEY.match(key)
    return tuple(int(part) for part in match.groups()) if match else (float("inf"),)


class Maildir:
    """The e-mails a local SMTP sink kept (aiosmtpd's Mailbox handler writes a Maildir)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def arrived(self, skip: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, EmailMessage]]:
        """The messages whose keys are not in ``skip``, with their keys, in the order they arrived."""
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, factory=None, create=False)
        found = []
        for key in sorted(set(box.iterkeys()) - skip, key=arrival):
            message = message_from_bytes(box.get_bytes(key), policy=default_policy)
            found.append((key, message))
        return found  # type: ignore[return-value]

    def messages(self) -> list[EmailMessage]:
        return [message for _key, message in self.arrived()]

    async def wait_for(
        self, to: str, *, matching: Callable[[EmailMessage], bool] = lambda _m: True, timeout: float = 60
    ) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if to.lower() in str(message.get("To", "")).lower() and matching(message):
                    return message
            await asyncio.sleep(0.2)
        raise JourneyError(f"no e-mail to {to} within {timeout} s")


def uses_the_keys_of(settings: Settings, jwks: dict[str, Any]) -> bool:
    """Whether a running registry signs its tokens with the key ``settings`` give (from the
    environment, or generated into the data directory in development). ``imi demo`` writes the
    coordinators straight into the registry's database and reads the SMTP sink's Maildir, both
    found through the data directory: this tells it that it has the same one as ``imi up``."""
    from services.registry.tokens import key_id
    from shared.keys import signing_key

    if settings.signing_key is None and not (settings.data_dir / "keys" / "imi_signing_key.pem").exists():
        return False  # not this data directory's system (and no key is generated here by asking)
    kid = key_id(signing_key(settings).public_key())
    return any(key.get("kid") == kid for key in jwks.get("keys", []))


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


class MailFeed:
    """What ``imi demo`` shows of the e-mails: each one as the SMTP sink receives it, between the
    steps that caused it (the notifier sends them a moment after the step, from the events)."""

    def __init__(self, mail: Maildir, say: Say) -> None:
        self.mail = mail
        self.say = say
        self.seen = {key for key, _message in mail.arrived()}  # what was there before the demo
        self.shown = 0

    def flush(self) -> None:
        for key, message in self.mail.arrived(self.seen):
            self.seen.add(key)
            self.shown += 1
            language = message.get("Content-Language", "?")
            self.say(f"      ✉ to {message['To']} ({language}): {message['Subject']}")

    async def follow(self, interval: float = 0.25) -> None:
        while True:
            self.flush()
            await asyncio.sleep(interval)


@dataclass
class Account:
    """A user as the journey knows them: e-mail, user name (told in person), password and code."""

    name: str
    email: str
    username: str = ""
    user_id: str = ""
    password: str = ""
    security_code: str = field(default_factory=lambda: "".join(secrets.choice("0123456789") for _ in range(12)))
    access_token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


Say = Callable[[str], None]
Bootstrap = Callable[[list[tuple[str, str]], str], Awaitable[dict[str, str]]]


@dataclass
class JourneyResult:
    request_id: str
    reference: str
    accounts: dict[str, Account]
    authorities: dict[str, str]
    mails: dict[str, EmailMessage]
    seen: dict[str, Any]  # what the journey's users were shown along the way, for the tests to check


class Journey:
    def __init__(
        self,
        endpoints: Endpoints,
        mail: Maildir,
        bootstrap: Bootstrap,
        *,
        say: Say = print,
        approvals: bool = False,
        run_id: str | None = None,
        timeout: float = 60,
    ) -> None:
        self.urls = endpoints
        self.mail = mail
        self.bootstrap = bootstrap
        self.say = say
        self.approvals = approvals
        self.run = run_id or secrets.token_hex(3)
        self.timeout = timeout
        self.http = httpx.AsyncClient(timeout=30)
        self.accounts: dict[str, Account] = {}
        self.authorities: dict[str, str] = {}
        self.mails: dict[str, EmailMessage] = {}
        self.seen: dict[str, Any] = {}

    # -- plumbing ------------------------------------------------------------------------------------

    def _email(self, local: str, domain: str) -> str:
        return f"{local}.{self.run}@{domain}"

    async def call(self, method: str, url: str, who: str | None = None, *, expect: int = 200, **kw: Any) -> Any:
        headers = self.accounts[who].auth if who else {}
        response = await self.http.request(method, url, headers=headers, **kw)
        if response.status_code != expect:
            raise JourneyError(f"{method} {url} as {who}: {response.status_code} {response.text}")
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    async def first_login(self, key: str) -> None:
        """Rule S12: the temporary password from the e-mail (rule S11: no user name in it), then a new
        password and a 12-digit security code."""
        account = self.accounts[key]
        message = await self.mail.wait_for(
            account.email, matching=lambda m: bool(PASSWORD_PATTERN.search(text_of(m))), timeout=self.timeout
        )
        body = text_of(message)
        if account.username in body or account.username in str(message["Subject"]):
            raise JourneyError("a user name was e-mailed (rule S11)")
        match = PASSWORD_PATTERN.search(body)
        assert match is not None
        self.mails[f"{key}:temporary_password"] = message
        started = await self.call(
            "POST", f"{self.urls.registry}/auth/login", json={"username": account.username, "password": match.group(1)}
        )
        if started["next"] != "setup":
            raise JourneyError(f"a temporary password should lead to setup, not {started['next']}")
        account.password = f"Pass-{secrets.token_hex(6)}-Xy9"
        tokens = await self.call(
            "POST",
            f"{self.urls.registry}/auth/setup",
            json={
                "setup_token": started["setup_token"],
                "new_password": account.password,
                "security_code": account.security_code,
            },
        )
        account.access_token = tokens["access_token"]
        me = await self.call("GET", f"{self.urls.registry}/auth/me", key)
        account.user_id = me["user_id"]

    async def login(self, key: str) -> None:
        """A later login: password, then three random positions of the security code (rule S12)."""
        account = self.accounts[key]
        started = await self.call(
            "POST",
            f"{self.urls.registry}/auth/login",
            json={"username": account.username, "password": account.password},
        )
        digits = {str(p): account.security_code[p - 1] for p in started["positions"]}
        tokens = await self.call(
            "POST",
            f"{self.urls.registry}/auth/login/code",
            json={"challenge_id": started["challenge_id"], "digits": digits},
        )
        account.access_token = tokens["access_token"]

    async def register_authority(self, who: str, key: str, body: dict[str, Any], first_user: Account) -> None:
        created = await self.call("POST", f"{self.urls.registry}/authorities", who, expect=201, json=body)
        self.authorities[key] = created["authority"]["id"]
        first_user.username = created["first_user"]["username"]
        first_user.user_id = created["first_user"]["id"]
        await self.call("POST", f"{self.urls.registry}/authorities/{self.authorities[key]}/validate", who)

    async def exchange_knows(self, authority_key: str, *, asked_by: str) -> None:
        """The exchange learns authorities from the registry's events; wait until it has this one
        (a draft addressed to it is accepted only then), and leave nothing behind."""
        deadline = time.monotonic() + self.timeout
        while True:
            probe = await self.http.post(
                f"{self.urls.exchange}/requests",
                headers=self.accounts[asked_by].auth,
                json={"area": PQ, "responding_authority_id": self.authorities[authority_key], "question_ids": []},
            )
            if probe.status_code == 201:
                await self.call("DELETE", f"{self.urls.exchange}/requests/{probe.json()['id']}", asked_by, expect=204)
                return
            if time.monotonic() > deadline:
                raise JourneyError(f"the exchange never learnt about {authority_key}: {probe.text}")
            await asyncio.sleep(0.3)

    # -- the journey ---------------------------------------------------------------------------------

    async def run_all(self) -> JourneyResult:
        try:
            await self.set_up_romania_and_ireland()
            await self.set_up_the_regional_college()
            await self.set_up_the_irish_council()
            request_id, reference = await self.exchange_a_request()
            return JourneyResult(request_id, reference, self.accounts, self.authorities, self.mails, self.seen)
        finally:
            await self.http.aclose()

    async def set_up_romania_and_ireland(self) -> None:
        say = self.say
        ro, ie, ec = (
            Account("Coordonator RO", self._email("coordonator", "imi-demo.ro")),
            Account("Coordinator IE", self._email("coordinator", "imi-demo.ie")),
            Account("Helpdesk", self._email("helpdesk", "imi-demo.eu")),
        )
        self.accounts.update(ro_coordinator=ro, ie_coordinator=ie, commission=ec)
        say("1. The Commission bootstraps the national IMI coordinators of Romania and Ireland (rule A2).")
        usernames = await self.bootstrap([("RO", ro.email), ("IE", ie.email)], ec.email)
        if set(usernames) != {"RO", "IE", "EU"}:
            raise JourneyError(
                "these coordinators exist already: the journey has run on this system before, and its data are "
                "in place to explore. To watch it again, stop `imi up` and start from empty data: "
                "`imi up --data-dir var/demo2`, then `imi demo --data-dir var/demo2`."
            )
        for key, country in (("ro_coordinator", "RO"), ("ie_coordinator", "IE"), ("commission", "EU")):
            self.accounts[key].username = usernames[country]
        for key in ("ro_coordinator", "ie_coordinator", "commission"):
            await self.first_login(key)
            say(
                f"   {self.accounts[key].name} received a temporary password by e-mail (no user name in it),"
                " chose a password and a 12-digit security code."
            )
        me = await self.call("GET", f"{self.urls.registry}/auth/me", "ro_coordinator")
        self.authorities["ro_coordinator"] = me["authority_id"]
        self.authorities["ie_coordinator"] = (
            await self.call("GET", f"{self.urls.registry}/auth/me", "ie_coordinator")
        )["authority_id"]
        if self.approvals:
            say("   Both coordinators approve requests and replies of their authorities (rule S15).")
            for key in ("ro_coordinator", "ie_coordinator"):
                await self.call(
                    "PUT",
                    f"{self.urls.registry}/coordinators/{self.authorities[key]}/settings/{PQ}",
                    key,
                    json={"referral": "yes", "approve_requests": True, "approve_replies": True},
                )

    async def set_up_the_regional_college(self) -> None:
        say = self.say
        first = Account("Ana Pop", self._email("ana.pop", "cmcluj.imi-demo.ro"))
        national_first = Account("Ion Marin", self._email("ion.marin", "cmr.imi-demo.ro"))
        self.accounts.update(college_first=first, national_first=national_first)
        say(
            "2. The Romanian coordinator registers the regional college of physicians in Cluj and the national"
            " college, and validates both."
        )
        await self.register_authority(
            "ro_coordinator",
            "college",
            college_body(
                f"Colegiul Medicilor Cluj {self.run}",
                first,
                self._email("office", "cmcluj.imi-demo.ro"),
                level="regional",
                region="Cluj",
            ),
            first,
        )
        await self.register_authority(
            "ro_coordinator",
            "national_college",
            college_body(
                f"Colegiul Medicilor din România {self.run}",
                national_first,
                self._email("office", "cmr.imi-demo.ro"),
                level="national",
                region=None,
            ),
            national_first,
        )
        await self.first_login("college_first")
        say(
            f"   {first.name}, the regional college's first user, logs in with the temporary password from her"
            " e-mail, then chooses her password and security code."
        )
        college = self.authorities["college"]
        english = {
            "informal_name": "Regional College of Physicians of Cluj – recognition of doctors' qualifications",
            "profile": "Competent authority for the recognition of doctors' professional qualifications in Cluj.",
        }
        await self.call(
            "PUT", f"{self.urls.registry}/authorities/{college}/translations/en", "commission", json=english
        )
        say("   The Commission's translators translate its informal name and profile into English (rule A3).")
        updated = await self.call(
            "PATCH",
            f"{self.urls.registry}/authorities/{college}",
            "college_first",
            json={
                "informal_name": "Colegiul regional al medicilor din Cluj – recunoașterea calificărilor medicilor",
                "profile": (
                    "Autoritate competentă pentru recunoașterea calificărilor profesionale ale medicilor din Cluj."
                ),
                "significant": True,
                "languages": ["ro", "en", "fr"],
                "phone": "+40 264 000 111",
                "website": "https://cmcluj.imi-demo.ro",
                "keywords": {
                    "economic_activities": ["Q"],
                    "policy_areas": ["public_health"],
                    "areas": {PQ: ["doctor_of_medicine", "specialised_doctor"]},
                },
            },
        )
        self.seen["college_edited"] = updated
        flagged = {t["language"]: t["status"] for t in updated["translations"]}
        if flagged.get("en") != "outdated":
            raise JourneyError(f"a significant change should flag the English translation outdated (S1): {flagged}")
        say(
            "   She edits the informal name and profile (a significant change: the English translation is now"
            f" {flagged['en']!r}, rule S1), languages, contacts and keywords (rules S1–S3)."
        )
        renewed = await self.call(
            "PUT", f"{self.urls.registry}/authorities/{college}/translations/en", "commission", json=english
        )
        self.seen["college_retranslated"] = renewed
        say(f"   The translators renew the English text: {renewed['shown']['status']!r} again.")
        linked = await self.call(
            "POST",
            f"{self.urls.registry}/authorities/{college}/links",
            "college_first",
            json={"linked_authority_id": self.authorities["national_college"]},
        )
        self.seen["college_linked"] = linked
        say("   She links the national college, which will see an overview of the college's requests (rule S4).")
        for key, name, local, roles in (
            ("ro_handler", "Mihai Ionescu", "mihai.ionescu", [{"role": "request_handler", "area": PQ}]),
            ("ro_allocator", "Elena Popa", "elena.popa", [{"role": "allocator", "area": PQ}]),
        ):
            account = Account(name, self._email(local, "cmcluj.imi-demo.ro"))
            created = await self.call(
                "POST",
                f"{self.urls.registry}/authorities/{college}/users",
                "college_first",
                expect=201,
                json={"name": name, "email": account.email, "language": "ro", "roles": roles},
            )
            account.username, account.user_id = created["username"], created["id"]
            self.accounts[key] = account
            self.seen[f"{key}_user"] = await self.call(
                "GET", f"{self.urls.registry}/users/{account.user_id}", "college_first"
            )
            await self.first_login(key)
        say(
            "   She registers two colleagues for professional qualifications, Mihai Ionescu as request handler and"
            " Elena Popa as allocator (rule S9); each logs in with the temporary password e-mailed to them …"
        )
        self.seen["allocation"] = await self.call(
            "PATCH", f"{self.urls.registry}/authorities/{college}", "college_first", json={"allocation_enabled": True}
        )
        say("   … and turns allocation on: requests to the college now go to Elena Popa first (rule S8).")

    async def set_up_the_irish_council(self) -> None:
        handler = Account("Aoife Byrne", self._email("aoife.byrne", "medicalcouncil.imi-demo.ie"))
        self.accounts["ie_handler"] = handler
        self.say("3. The Irish coordinator registers the Medical Council; its first user logs in.")
        await self.register_authority(
            "ie_coordinator",
            "ie_council",
            {
                "country": "IE",
                "level": "national",
                "official_name": f"Medical Council {self.run}",
                "language": "en",
                "informal_name": "Medical Council of Ireland – registration of doctors",
                "emails": [self._email("office", "medicalcouncil.imi-demo.ie")],
                "languages": ["en"],
                "areas": [PQ],
                "keywords": {"areas": {PQ: ["doctor_of_medicine"]}},
                "first_user": {"name": handler.name, "email": handler.email, "language": "en"},
            },
            handler,
        )
        await self.first_login("ie_handler")

    async def exchange_a_request(self) -> tuple[str, str]:
        say, urls = self.say, self.urls
        say("4. Aoife Byrne searches the directory in English for the Romanian counterpart.")
        found = await self._search("doctor medicine", "RO")
        self.seen["search_result"] = found
        say(
            f"   “doctor medicine”, country RO, shown in English: {found['official_name']}"
            f" – {found['informal_name']} (the official name stays in Romanian, rule S1)."
        )
        await self.exchange_knows("college", asked_by="ie_handler")
        await self.exchange_knows("ie_council", asked_by="ro_handler")
        say("5. She writes a professional-qualifications request in English, with the doctor's personal data.")
        created = await self.call(
            "POST",
            f"{urls.exchange}/requests",
            "ie_handler",
            expect=201,
            json={
                "area": PQ,
                "responding_authority_id": self.authorities["college"],
                "question_ids": ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"],
                "subject": {
                    "family_name": SUBJECT_MARKER,
                    "given_names": "Siobhán",
                    "date_of_birth": "1984-02-29",
                    "profession": "doctor of medicine",
                },
                "reply_date": "2099-12-31",
                "comment": "Dr Ó Briain applied for registration in Ireland.",
            },
        )
        request_id, reference = created["id"], created["reference"]
        sent = await self.call("POST", f"{urls.exchange}/requests/{request_id}/send", "ie_handler")
        if self.approvals:
            say(f"   {reference} awaits the Irish coordinator's approval (rule E3) …")
            if sent["state"] != "awaiting_request_approval":
                raise JourneyError(f"expected approval first, got {sent['state']}")
            await self.call("POST", f"{urls.exchange}/requests/{request_id}/approve", "ie_coordinator")
            say("   … which approves it.")
        say(f"   {reference} is on its way to the college; the notifier e-mails the college's allocator.")
        alert = await self.mail.wait_for(
            self.accounts["ro_allocator"].email, matching=lambda m: reference in str(m["Subject"]), timeout=self.timeout
        )
        self.mails["allocator:request_received"] = alert
        say(
            f"6. Elena Popa, the allocator, is alerted in her language ({alert['Content-Language']}):"
            f" “{alert['Subject']}”"
        )
        self.seen["allocated"] = await self.call(
            "POST",
            f"{urls.exchange}/requests/{request_id}/allocate",
            "ro_allocator",
            json={"user_id": self.accounts["ro_handler"].user_id},
        )
        say("   She allocates it to Mihai Ionescu (rule E2), who accepts it and answers in Romanian.")
        self.seen["accepted"] = await self.call("POST", f"{urls.exchange}/requests/{request_id}/accept", "ro_handler")
        view = await self.call("GET", f"{urls.exchange}/requests/{request_id}", "ro_handler")
        self.seen["responder_view"] = view
        say(f"   He reads the first question in Romanian: “{view['questions'][0]['text']}”")
        await self.call(
            "PUT",
            f"{urls.exchange}/requests/{request_id}/answers",
            "ro_handler",
            json={
                "answers": {
                    "pq.identity.document_matches": "yes",
                    "pq.diploma.authentic": "yes",
                    "pq.sanctions.any": "no",
                }
            },
        )
        replied = await self.call(
            "POST",
            f"{urls.exchange}/requests/{request_id}/reply",
            "ro_handler",
            json={"comment": "Diploma autentică, fără sancțiuni."},
        )
        if self.approvals:
            if replied["state"] != "awaiting_reply_approval":
                raise JourneyError(f"expected reply approval, got {replied['state']}")
            await self.call("POST", f"{urls.exchange}/requests/{request_id}/reply/approve", "ro_coordinator")
            say("   The Romanian coordinator approves the reply (rule E3).")
        answered = await self.call("GET", f"{urls.exchange}/requests/{request_id}", "ie_handler")
        self.seen["requester_view"] = answered
        say(
            f"7. Aoife Byrne reads the answer in English: “{answered['questions'][1]['text']}” → "
            f"{answered['questions'][1]['answer_label']}"
        )
        self.seen["more_asked"] = await self.call(
            "POST",
            f"{urls.exchange}/requests/{request_id}/additional-information",
            "ie_handler",
            json={"comment": "Could you send the transcript of the diploma?"},
        )
        say("   She asks for more information (rule E4); the college states it cannot give more.")
        self.seen["more_refused"] = await self.call(
            "POST",
            f"{urls.exchange}/requests/{request_id}/additional-information/refusal",
            "ro_handler",
            json={"comment": "Nu deținem foaia matricolă."},
        )
        referred = await self.call("POST", f"{urls.exchange}/requests/{request_id}/referral", "ie_handler", json={})
        self.seen["referred"] = referred
        say(f"   She asks for referral (rule S14): {len(referred['referral_coordinator_ids'])} coordinators step in.")
        for key in ("ie_coordinator", "ro_coordinator"):
            await self.call(
                "POST",
                f"{urls.exchange}/requests/{request_id}/referral/opinion",
                key,
                json={"comment": "The answer given is sufficient."},
            )
        closed = await self.call("GET", f"{urls.exchange}/requests/{request_id}", "ie_handler")
        if closed["state"] != "closed":
            raise JourneyError(f"the request should be closed, it is {closed['state']}")
        say("   Both coordinators give their opinion and the request closes.")
        self.seen["closed"] = closed
        for key in ("national_first", "ro_coordinator", "ie_coordinator"):
            await self.login_if_needed(key)
            outside = await self.call("GET", f"{urls.exchange}/requests/{request_id}", key)
            self.seen[f"{key}_view"] = outside
            if outside.get("subject") or SUBJECT_MARKER in str(outside):
                raise JourneyError(f"{key} saw personal data (rule P4): {outside}")
        say(
            "8. The linked national college and both coordinators open the request: they see its state, dates and"
            f" parties (access {self.seen['national_first_view']['access']!r}), without personal data (rule P4)."
        )
        return request_id, reference

    async def login_if_needed(self, key: str) -> None:
        account = self.accounts[key]
        if account.access_token:
            return
        if not account.password:
            await self.first_login(key)
        else:
            await self.login(key)

    async def _search(self, text: str, country: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            page = await self.call(
                "GET",
                f"{self.urls.registry}/directory/authorities",
                "ie_handler",
                params={"q": text, "country": country, "lang": "en"},
            )
            for item in page["items"]:
                if item["id"] == self.authorities["college"]:
                    return dict(item)
            if time.monotonic() > deadline:
                raise JourneyError(f"the directory did not find the college for {text!r}: {page}")
            await asyncio.sleep(0.3)

    async def six_months_later(self, request_id: str) -> dict[str, Any]:
        """Rule P2: six months and a day after closure the personal data are gone; the purge log holds."""
        say = self.say
        say("9. Six months and a day pass (every service's clock moves forward).")
        self.http = httpx.AsyncClient(timeout=30)
        try:
            for url in (self.urls.registry, self.urls.exchange, self.urls.notifier, self.urls.retention):
                await self.call("POST", f"{url}/_dev/clock", json={"advance": "P6M1D"})
            for key in ("ie_handler", "commission"):
                await self.login(key)
            await self.call("POST", f"{self.urls.retention}/retention/scheduler/run", "commission")
            deadline = time.monotonic() + self.timeout
            while True:
                status = await self.call("GET", f"{self.urls.retention}/retention/requests/{request_id}", "commission")
                if status["status"] == "purged":
                    break
                if time.monotonic() > deadline:
                    raise JourneyError(f"the purge was not confirmed: {status}")
                await asyncio.sleep(0.3)
            view = await self.call("GET", f"{self.urls.exchange}/requests/{request_id}", "ie_handler")
            verified = await self.call("GET", f"{self.urls.retention}/retention/log/verify", "commission")
            if view["subject"] or SUBJECT_MARKER in str(view):
                raise JourneyError(f"the personal data are still there (rule P2): {view}")
            say(
                "   The retention service ordered the purge and the exchange carried it out: Aoife Byrne opens the"
                f" request again and finds no doctor's data and no comments (personal_data_purged:"
                f" {view['personal_data_purged']}); the purge log's hash chain verifies: {verified['intact']}."
            )
            return {"status": status, "view": view, "verification": verified}
        finally:
            await self.http.aclose()


def college_body(name: str, first: Account, office: str, *, level: str, region: str | None) -> dict[str, Any]:
    return {
        "country": "RO",
        "level": level,
        "region": region,
        "official_name": name,
        "language": "ro",
        "informal_name": "Colegiul medicilor",
        "profile": "Recunoașterea calificărilor profesionale ale medicilor.",
        "emails": [office],
        "languages": ["ro"],
        "areas": [PQ],
        "keywords": {"areas": {PQ: ["doctor_of_medicine"]}},
        "first_user": {"name": first.name, "email": first.email, "language": "ro"},
    }
