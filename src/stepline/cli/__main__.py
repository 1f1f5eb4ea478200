"""``python -m stepline.cli``."""

from stepline.cli import main

main()
