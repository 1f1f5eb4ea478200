"""The Store contract suite: every backend passes the same tests (DESIGN §5)."""
