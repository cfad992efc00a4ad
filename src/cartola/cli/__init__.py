"""``cartola`` entry point; each subcommand delegates to the packages below."""
from cartola.cli.app import main

__all__ = ["main"]
