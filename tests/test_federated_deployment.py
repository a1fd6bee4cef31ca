"""The same apps deployed: a SuperLink and two SuperNodes on loopback, `flwr run` of the
app bundle in deploy/flower (the README's commands), the rounds in the database."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
BUNDLE = Path(__file__).resolve().parent.parent / "deploy" / "flower"
RUN_FILE = """\
run: {model: resnet18, width: 0.125, dataset: synthetic, epochs: 1, lr: 0.001,
      method: pre, scenario: uniform, device: cpu}
federated: {clients: 4, clients_per_round: 2, rounds: 2}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_superlink_and_two_supernodes_on_loopback_train_a_federated_run(tmp_path):
    home = tmp_path / "flwr"
    home.mkdir()
    link = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n[superlink.local]\naddress = "127.0.0.1:{link}"\n'
        "insecure = true\n"
    )
    (tmp_path / "run.yaml").write_text(RUN_FILE)
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}
    started = []

    def start(*command: str, log: str) -> None:
        with open(tmp_path / log, "w") as out:
            started.append(
                subprocess.Popen(
                    command, env=env, cwd=tmp_path, stdout=out, stderr=out, start_new_session=True
                )
            )

    try:
        start("flower-superlink", "--insecure", "--port", str(link), log="link.log")
        time.sleep(5)
        for node in range(2):
            start(
                "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                "--port", str(free_port()), log=f"node{node}.log",
            )  # fmt: skip
        time.sleep(5)
        db = tmp_path / "r.db"
        run_config = f'config="{tmp_path / "run.yaml"}" db="{db}" runs-dir="{tmp_path / "runs"}"'
        subprocess.run(
            ["flwr", "run", str(BUNDLE), "local", "--run-config", run_config, "--stream"],
            env=env, cwd=tmp_path, check=True, timeout=400, capture_output=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and status != "finished":
            time.sleep(1)
            if db.exists():
                with sqlite3.connect(db) as connection:
                    row = connection.execute("SELECT status FROM federated_runs").fetchone()
                status = row and row[0]
        with sqlite3.connect(db) as connection:
            rounds = connection.execute(
                "SELECT round, bytes_up, clients_failed FROM federated_rounds ORDER BY round"
            ).fetchall()
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGKILL)
    assert status == "finished"
    assert [row[0] for row in rounds] == [0, 1, 2]
    assert all(row[1] > 0 and row[2] == 0 for row in rounds[1:])
    for node in range(2):
        assert "train message" in (tmp_path / f"node{node}.log").read_text()
