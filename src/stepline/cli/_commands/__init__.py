"""One module per ``stepline`` command."""
