"""Run and event ids: ULID layout in Crockford base32, sorting by creation time."""

from __future__ import annotations

import base64
import os
import random
import warnings

from stepline._ids import _encode, _encode_run, _last_in, new_id, new_ids

_RFC4648_TO_CROCKFORD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def _reference(value: int) -> str:
    """The encoding as it was first written: base32 of the 16 bytes, cut to 26 characters."""
    text = base64.b32encode(value.to_bytes(16, "big")).decode("ascii")[:26]
    return text.translate(_RFC4648_TO_CROCKFORD)


def test_encoding_is_the_base32_text_ids_always_had() -> None:
    # issue 6 "What it must show": new_id is on every event's path; its faster encoding must
    # write exactly the ids stored databases already hold
    rng = random.Random(6)
    values = [0, 1, (1 << 128) - 1, 1 << 127, *(rng.getrandbits(128) for _ in range(5000))]
    for value in values:
        assert _encode(value) == _reference(value)


def test_a_batch_is_encoded_as_each_value_alone() -> None:
    # new_ids encodes a run of values from its first one's text, 256 values at a time: runs
    # crossing every carry of the low bits, starting anywhere in a block, of every short length
    rng = random.Random(8)
    starts = [0, 250, 255, 256, 1023, (5 << 80) | 0xFFFF_FFFF_FFFF_FFFF_FFF0, (1 << 128) - 600]
    starts += [rng.getrandbits(128) >> 1 for _ in range(40)]
    for start in starts:
        for count in (1, 2, 255, 256, 257, 530):
            if start + count <= 1 << 128:
                expected = [_reference(start + i) for i in range(count)]
                assert _encode_run(start, count) == expected
    assert _encode_run(7, 0) == []


def test_a_batch_of_ids_is_strictly_increasing() -> None:
    ids = new_ids(2000, 1_700_000_000.5)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 26 and _reference(_decode(i)) == i for i in ids)


def _decode(text: str) -> int:
    digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for char in text:
        value = value * 32 + digits.index(char)
    return value >> 2


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id(1_700_000_000 + i / 1000) for i in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


def test_a_forked_child_never_makes_its_parents_next_id() -> None:
    # new_id reads random bytes from the OS in blocks: a child forked with unread bytes in the
    # block would make the ids its parent makes next (worker processes started by fork)
    # the parent has made an id in that millisecond before (ids made in one millisecond step on
    # from the last one): seen failing when another test had used the same instant
    at = 1_700_000_000.0
    millis = int((at + 1) * 1000)
    _last_in[millis] = (millis << 80) | ((1 << 80) - 16)  # so both would step on from it
    new_id(at)  # the block is read; most of it is still unread when the child forks
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns of fork in a threaded process: none here
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write_end, new_id(at + 1).encode())
        os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(child, 0)
    from_child = os.read(read_end, 64).decode()
    os.close(read_end)
    assert status == 0 and len(from_child) == 26
    assert new_id(at + 1) != from_child
