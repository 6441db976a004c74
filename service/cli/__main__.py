"""``python -m service.cli`` is ``imgcls``."""

from service.cli import main

main()
