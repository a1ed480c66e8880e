"""The local runner's watchdog on the data endpoint: a moto server busy for seconds (listing 100,000 keys holds its
interpreter) is slow, not gone; a refused connection is gone."""

from __future__ import annotations

import socket
import threading

from mediacanon.local.embedded import free_port
from mediacanon.local.sfnwatch import Watchdog, endpoint_answers


def test_a_slow_endpoint_still_answers_and_a_refusing_one_does_not() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        held: list[socket.socket] = []
        threading.Thread(target=lambda: held.append(busy.accept()[0]), daemon=True).start()  # takes it, never answers
        assert endpoint_answers(f"http://127.0.0.1:{busy.getsockname()[1]}", timeout=0.3)
        for conn in held:
            conn.close()
    nobody = f"http://127.0.0.1:{free_port()}"
    assert not endpoint_answers(nobody, timeout=0.3)
    watchdog = Watchdog(nobody, every=0.0, misses=2)
    assert not watchdog.gone() and watchdog.gone()  # gone after two refusals in a row
    assert "2 checks in a row" in watchdog.cause
