"""`make dev`, then the printed `send` command in a second terminal, as a new user would."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.embedded import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "consumer.cli"]


def test_dev_stack_answers_the_printed_send_command(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATION_DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env["PYTHONPATH"] = str(ROOT)
    out = open(tmp_path / "dev.out", "w+")
    dev = subprocess.Popen(CLI + ["dev"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "partitions assigned" in (tmp_path / "dev.out").read_text() or dev.poll() is not None, 90, "the dev stack to consume")
        banner = (tmp_path / "dev.out").read_text()
        assert dev.poll() is None, banner
        printed = next(line.strip() for line in banner.splitlines() if " send examples/" in line)
        args = printed.split()[1:]  # the printed command runs the installed script; run the module instead
        sent = subprocess.run(CLI + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        reply = json.loads(sent.stdout)
        assert reply["status"] == "OK" and reply["action"] == "scheduling.reschedule"
        assert reply["output"]["event_type"] == "APPOINTMENT_RESCHEDULED"

        tailed = subprocess.run(CLI + ["tail", "events", "--from-beginning", "--limit", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        event = json.loads(tailed.stdout.splitlines()[0])
        assert event["value"]["causationId"] == reply["command_id"]
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(60)
        out.close()
    assert dev.returncode == 0, (tmp_path / "dev.out").read_text()[-3000:]
