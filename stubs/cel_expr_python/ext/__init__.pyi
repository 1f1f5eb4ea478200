"""Typing stubs for ``cel_expr_python.ext`` (CEL extension libraries)."""
