"""Issue 14, finding 9: `serve` refuses a secret key shorter than 32 characters (exit 2, naming the
variable); an unset key is still allowed for trying it out (a random one, with a warning)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.service import free_port

CLI = Path(sys.executable).with_name("agentbilling")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBILLING_")}
    env.update({"AGENTBILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", **extra})
    return env


@pytest.mark.parametrize("key", ["a", "x" * 31])
def test_finding_9_serve_refuses_a_short_secret_key(tmp_path, key):
    result = subprocess.run([str(CLI), "serve", "--no-worker"], env=_env(tmp_path, AGENTBILLING_SECRET_KEY=key),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert "AGENTBILLING_SECRET_KEY" in result.stderr and "32" in result.stderr


@pytest.mark.parametrize("key", [None, "k" * 32])
def test_finding_9_serve_starts_with_a_long_key_or_none(tmp_path, key):
    port = free_port()
    extra = {"AGENTBILLING_SECRET_KEY": key} if key else {}
    proc = subprocess.Popen([str(CLI), "serve", "--no-worker", "--port", str(port)], env=_env(tmp_path, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
            time.sleep(0.2)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    if key is None:
        assert "AGENTBILLING_SECRET_KEY is unset" in output
