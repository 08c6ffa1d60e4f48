"""``python -m mlcore`` runs the command line."""

from mlcore.cli import main

main()
