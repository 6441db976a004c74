"""``python -m training.cli`` is ``imgcls``."""

from training.cli import main

main()
