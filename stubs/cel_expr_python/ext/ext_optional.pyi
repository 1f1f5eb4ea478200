"""Typing stub for ``cel_expr_python.ext.ext_optional``."""

from cel_expr_python import cel

class ExtOptional(cel.CelExtensionBase):
    def __init__(self, version: int = ...) -> None: ...
