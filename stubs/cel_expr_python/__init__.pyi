"""Typing stubs for ``cel-expr-python`` (the package ships no ``py.typed``)."""
