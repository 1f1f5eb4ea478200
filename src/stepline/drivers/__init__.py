"""How a function is driven: in-process Python (``engine``'s executor today) or an Inngest SDK
app over HTTP (``drivers.inngest``: the wire protocol, pure of I/O)."""
