"""``python -m training.cli`` is ``imgcls`` (``service.cli``), as ``python -m service.cli`` is."""

from service.cli import main

main()
