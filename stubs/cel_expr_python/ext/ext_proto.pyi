"""Typing stub for ``cel_expr_python.ext.ext_proto``."""

from cel_expr_python import cel

class ExtProto(cel.CelExtensionBase):
    def __init__(self, version: int = ...) -> None: ...
