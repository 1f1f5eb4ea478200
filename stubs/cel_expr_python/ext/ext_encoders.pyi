"""Typing stub for ``cel_expr_python.ext.ext_encoders``."""

from cel_expr_python import cel

class ExtEncoders(cel.CelExtensionBase):
    def __init__(self, version: int = ...) -> None: ...
