"""``python -m llenergymeasure`` is ``llem``."""

from llenergymeasure.cli import main

main()
