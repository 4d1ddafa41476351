"""Waiting for the other tasks of `TF_CONFIG` before TensorFlow does: TensorFlow waits for an
unreachable worker silently and without end, so each task first listens on its own address and
polls the others', saying what it waits for, and gives up with one line after a timeout
(`train --worker-timeout`)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from rescompile.errors import RescompileError, printable

POLL_SECONDS = 0.5
LINGER_SECONDS = 3.0
"""How long a task that has reached every other one still answers their probes: one that polled
a moment later would otherwise find this port closed and wait out its timeout."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RescompileError(f"TF_CONFIG: {printable(address)!r} is not host:port")
    return host.strip("[]"), int(port)


def _tasks() -> tuple[list[str], str]:
    """(every task's address, this task's), chief first, from TF_CONFIG (checked by worker_shard)."""
    config = json.loads(os.environ["TF_CONFIG"])
    cluster, task = config["cluster"], config["task"]
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    own = (chiefs if task["type"] == "chief" else workers)[int(task["index"])]
    return chiefs + workers, own


def _answer(listener: socket.socket, stop: threading.Event) -> None:
    """Accept and close the other tasks' probes until stopped."""
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        connection.close()


def _reachable(address: str) -> bool:
    try:
        with socket.create_connection(_split(address), timeout=POLL_SECONDS):
            return True
    except OSError:
        return False


def wait_for_cluster(timeout: float) -> None:
    """Return once every other task of TF_CONFIG accepts connections (this one answering theirs
    meanwhile on its own port); after `timeout` seconds, a one-line error naming those missing."""
    addresses, own = _tasks()
    others = [address for address in addresses if address != own]
    try:
        listener = socket.create_server(("", _split(own)[1]))
    except OSError as exc:
        raise RescompileError(
            f"TF_CONFIG: cannot listen on {printable(own)} ({exc.strerror or exc})"
        ) from None
    listener.settimeout(POLL_SECONDS)
    stop = threading.Event()
    answering = threading.Thread(target=_answer, args=(listener, stop), daemon=True)
    answering.start()
    deadline, said = time.monotonic() + timeout, False
    try:
        while missing := [address for address in others if not _reachable(address)]:
            if time.monotonic() > deadline:
                raise RescompileError(
                    f"--distribute multiworker: {printable(', '.join(missing))} not reachable after"
                    f" {timeout:g} s (--worker-timeout); start every task of TF_CONFIG or check its"
                    " addresses"
                )
            if not said:
                print(
                    printable(
                        f"waiting up to {timeout:g} s (--worker-timeout) for the other tasks of TF_CONFIG:"
                        f" {', '.join(missing)}"
                    ),
                    flush=True,
                )
                said = True
            others = missing
            time.sleep(POLL_SECONDS)
        time.sleep(LINGER_SECONDS)
    finally:
        stop.set()
        answering.join()
        listener.close()
