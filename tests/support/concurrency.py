"""Work released in several threads at once, for the tests of races."""

from __future__ import annotations

import threading


def at_once(n: int, work) -> list[BaseException]:
    """Run `work` in n threads released together; the errors they raised."""
    gate, errors = threading.Barrier(n), []

    def run() -> None:
        gate.wait()
        try:
            work()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors
