"""Typing stub for ``cel_expr_python.ext.ext_strings``."""

from cel_expr_python import cel

class ExtStrings(cel.CelExtensionBase):
    def __init__(self, version: int = ...) -> None: ...
