"""Checks a running stack, either target, from its outputs: `python -m components.commands.verify`."""
