"""The command line: Typer commands (app.py) and output for people and programs (render.py)."""
