"""A newcomer's two steps (issue 7): `imi up` on embedded defaults, then `imi demo` shows the whole
journey, with the e-mails the local SMTP sink received, in under two minutes."""

from __future__ import annotations

import asyncio
import mailbox
import os
import re
import signal
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from services.journey import Maildir, MailFeed
from shared.settings import DEFAULT_PORTS, SERVICES
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.serial  # the default ports, and a two-minute limit
async def test_imi_up_then_imi_demo_show_the_whole_journey_in_under_two_minutes(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMI_")}
    env.update(IMI_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT))
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "up",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                try:
                    answers = [await client.get(f"http://127.0.0.1:{DEFAULT_PORTS[s]}/health/ready") for s in SERVICES]
                except httpx.TransportError:
                    return False
                return all(a.status_code == 200 for a in answers)

            await wait_until(ready, timeout=30, interval=0.3, message="imi up ready")
        # Given another data directory than `imi up`'s, the demo says so at once and touches nothing
        # there (it would write the coordinators into another database and wait for e-mails in vain).
        elsewhere = tmp_path / "elsewhere"
        wrong = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services",
            "demo",
            "--data-dir",
            str(elsewhere),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(wrong.communicate(), 30)
        assert wrong.returncode == 2, output.decode()
        assert "give `imi demo --data-dir` the directory `imi up` printed" in output.decode()
        assert not elsewhere.exists()

        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services",
            "demo",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(demo.communicate(), 110)
        text = output.decode()
        assert demo.returncode == 0, text
        assert time.monotonic() - started < 120
        steps = [
            "1. The Commission bootstraps",
            "2. The Romanian coordinator registers the regional college",
            "the English translation is now 'outdated'",
            "3. The Irish coordinator registers the Medical Council",
            "4. Aoife Byrne searches the directory in English",
            "5. She writes a professional-qualifications request in English",
            "6. Elena Popa, the allocator, is alerted in her language (ro)",
            "7. Aoife Byrne reads the answer in English",
            "the request closes",
            "8. The linked national college and both coordinators open the request",
            "9. Six months and a day pass",
            "the purge log's hash chain verifies: True",
        ]
        positions = [text.index(step) for step in steps]
        assert positions == sorted(positions)  # the steps in the guide's order
        # The e-mails as the local SMTP sink receives them, in their recipients' languages.
        assert "(ro): Parola dumneavoastră temporară pentru IMI" in text
        assert "(en): Your temporary IMI password" in text
        alert = re.search(r"✉ to elena\.popa\.\w+@cmcluj\.imi-demo\.ro \(ro\): A fost primită o nouă cerere", text)
        assert alert is not None and positions[5] < alert.start() < positions[6], text  # between steps 5 and 6
        # What to explore with afterwards.
        assert re.search(r"Aoife Byrne +aoife\.byrne\.\d+ +Pass-", text)
        assert "POST http://127.0.0.1:8001/auth/login" in text
    finally:
        up.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(up.wait(), 20)
        except TimeoutError:
            up.kill()


def test_the_demo_shows_e_mails_in_the_order_they_arrived_not_by_their_whole_second_date(tmp_path):
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    for subject in ("first", "second", "third", "fourth"):
        message = EmailMessage()
        message["To"] = "someone@imi-demo.ro"
        message["Subject"] = subject
        message["Date"] = "Sun, 29 Nov 2026 06:00:00 +0000"  # one second for all, as a burst of alerts has
        message["Content-Language"] = "ro"
        box.add(message)
    shown: list[str] = []
    feed = MailFeed(Maildir(tmp_path / "mail"), shown.append)
    assert feed.seen and not shown  # what was there before the demo is not shown as its own
    feed.seen.clear()
    feed.flush()
    feed.flush()  # each once
    assert shown == [f"      ✉ to someone@imi-demo.ro (ro): {s}" for s in ("first", "second", "third", "fourth")]
