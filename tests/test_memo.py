"""The caches: bounded, safe under threads, and never a source of wrong answers."""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address

import pytest

import swarmdns
from swarmdns import _memo
from swarmdns._backends import wire

TASKS = 1000
QUERY = wire.build_query("tasks.web.", wire.TYPE_A, 0x1234)


def answer_to(query: bytes, addresses: list[int]) -> bytes:
    """The engine's answer to ``query`` (without EDNS): one A record per address."""
    question = query[12 : len(query) - 11]  # without the header and the OPT record
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, len(addresses), 0, 0)
    records = b"".join(
        b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IHI", 600, 4, a) for a in addresses
    )
    return header + question + records


def new_tasks(rng: random.Random) -> list[int]:
    return rng.sample(range(0x0A000000, 0x0AFFFFFF), TASKS)


@pytest.fixture
def switch_often() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_reading_ever_new_answers_from_eight_threads(switch_often: None) -> None:
    def read_many(seed: int) -> int:
        rng = random.Random(seed)
        for _ in range(700):  # 5,600 in all: more than any cache of answers would hold
            sent = new_tasks(rng)
            reply = wire.read_reply(answer_to(QUERY, sent), QUERY, wire.TYPE_A)
            assert reply is not None
            assert [int(a) for a in reply.records] == sorted(sent)
        return seed

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(read_many, range(8))) == list(range(8))
    for name, size in _memo.cache_sizes().items():
        assert size <= 65536, name


class EverNewAnswers:
    """A UDP nameserver whose every answer is a new set of 1,000 task addresses."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.sent: set[tuple[int, ...]] = set()
        self._rng = random.Random(7)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            addresses = new_tasks(self._rng)
            self.sent.add(tuple(sorted(addresses)))
            self.sock.sendto(answer_to(query, addresses), client)  # 16 kB: one datagram

    def __enter__(self) -> EverNewAnswers:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_task_ips_from_eight_threads_against_ever_new_answers(switch_often: None) -> None:
    with EverNewAnswers() as server:
        backend = swarmdns.DirectBackend([server.nameserver])

        def look_up(_: int) -> tuple[IPv4Address, ...]:
            return swarmdns.task_ips("web", backend=backend, timeout=10)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(look_up, range(120)))

    assert len(results) == 120
    assert {tuple(int(a) for a in r) for r in results} <= server.sent  # nothing made up


# tracemalloc slows every allocation several times over; on a loaded machine the
# 4,000 readings take longer than the suite's default timeout, and that says nothing.
@pytest.mark.timeout(600)
def test_memory_stays_flat_over_thousands_of_distinct_answers() -> None:
    rng = random.Random(11)
    answer = bytearray(answer_to(QUERY, list(range(TASKS))))
    first_address_byte = len(answer) - 16 * TASKS + 12

    def read_new_answer() -> None:
        for byte in range(4):  # every address anew, 4 bytes a record apart
            answer[first_address_byte + byte :: 16] = rng.randbytes(TASKS)
        assert wire.read_reply(bytes(answer), QUERY, wire.TYPE_A) is not None

    for _ in range(100):  # what a warm process already holds
        read_new_answer()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(4000):
            read_new_answer()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert after - before < 10 * 2**20


def test_a_memo_remembers_results_not_errors() -> None:
    calls: list[str] = []

    @_memo.memoize(maxsize=2)
    def checked(text: str) -> str:
        calls.append(text)
        if not text:
            raise ValueError("empty")
        return text.upper()

    assert (checked("a"), checked("a")) == ("A", "A")
    for _ in range(2):
        with pytest.raises(ValueError, match="empty"):
            checked("")
    checked("b")
    checked("c")  # "a" is the least recently used: it goes
    checked("a")

    assert calls == ["a", "", "", "b", "c", "a"]
    _memo.clear_caches()
    assert checked.cache_info().currsize == 0
