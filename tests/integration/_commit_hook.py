"""Wrap ``commit_pass`` in every write transaction a store makes (``transaction()``, and the
optimistic ones of a store that has them: PostgreSQL), to count or refuse pass commits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stepline.store.interface import OptimisticStore, Store

CommitPass = Callable[[Any, float, Any], Any]


def hook_commit_pass(store: Store, hook: Callable[[CommitPass], CommitPass]) -> None:
    """Every transaction's ``commit_pass`` becomes ``hook(its commit_pass)``."""

    def hooked(transaction: Callable[[], Any]) -> Callable[[], Any]:
        @contextmanager
        def with_hook() -> Iterator[Any]:
            with transaction() as tx:
                tx.commit_pass = hook(tx.commit_pass)
                yield tx

        return with_hook

    store.transaction = hooked(store.transaction)  # type: ignore[method-assign]
    if isinstance(store, OptimisticStore):
        optimistic = hooked(store.optimistic_transaction)
        store.optimistic_transaction = optimistic  # type: ignore[method-assign]
