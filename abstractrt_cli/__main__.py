"""``python -m abstractrt_cli`` runs the ``abstractrt`` command."""

from .cli.app import main

if __name__ == "__main__":
    main()
