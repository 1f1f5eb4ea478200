"""Typing stub for ``cel_expr_python.ext.ext_math``."""

from cel_expr_python import cel

class ExtMath(cel.CelExtensionBase):
    def __init__(self, version: int = ...) -> None: ...
