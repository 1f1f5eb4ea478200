"""Typing stub for ``cel_expr_python.ext.ext_bindings``."""

from cel_expr_python import cel

class ExtBindings(cel.CelExtensionBase):
    def __init__(self, version: int = ...) -> None: ...
