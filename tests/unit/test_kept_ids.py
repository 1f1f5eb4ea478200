"""The id arithmetic of the announcements kept as a row (``store/sqlite/_derived.py``): a
pair's second id is its first plus one (``new_ids``), whatever the last digits (a carry, a
borrow), and anything that is not a Stepline id is none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepline._ids import _encode, new_ids
from stepline.store.sqlite._derived import id_after, id_before

_VALUES = st.integers(min_value=0, max_value=2**128 - 1) | st.sampled_from(
    [0, 1, 7, 8, 2**80 - 1, 2**80, 2**128 - 1]
)


@given(_VALUES)
def test_the_ids_around_an_id_are_its_value_plus_and_minus_one(value: int) -> None:
    top = 1 << 128
    assert id_after(_encode(value)) == _encode((value + 1) % top)
    assert id_before(_encode(value)) == _encode((value - 1) % top)


def test_each_id_new_ids_makes_follows_the_one_before() -> None:
    for _ in range(200):
        made = new_ids(10)
        assert [id_after(i) for i in made[:-1]] == made[1:]
        assert [id_before(i) for i in made[1:]] == made[:-1]


@given(st.text(max_size=30))
def test_what_is_not_an_id_has_no_id_before(text: str) -> None:
    if len(text) != 26 or any(c not in "0123456789ABCDEFGHJKMNPQRSTVWXYZ" for c in text):
        assert id_before(text) is None
