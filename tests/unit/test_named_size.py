"""The bytes of a notification's naming of its new runs (``wakeups._named_size``: it bounds the
hand-off's payload and says whether the runs are named at all): what ``json.dumps`` makes of
it, compact with non-ASCII characters escaped, whatever the ids (``orjson`` writes non-ASCII
characters and DEL as they are: those go through ``json.dumps``)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from stepline.store.postgres.wakeups import _named_size

_IDS = st.text() | st.text(alphabet=st.characters(max_codepoint=0x7F))


@given(st.lists(st.tuples(_IDS, _IDS), min_size=1, max_size=16))
def test_the_naming_is_measured_as_compact_escaped_json(pairs: list[tuple[str, str]]) -> None:
    named = [[fn, run] for fn, run in pairs]
    assert _named_size(named) == len(json.dumps(named, separators=(",", ":")).encode())


def test_del_and_non_ascii_ids_are_measured_escaped() -> None:
    for fn in ("f\x7fn", "grüße", "\u2603", 'a\nb\x01\x1f"\\/'):
        named = [[fn, "01JB"]]
        assert _named_size(named) == len(json.dumps(named, separators=(",", ":")).encode())
