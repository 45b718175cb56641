"""The ``uvac`` command: train, evaluate, cluster, distil and export from a shell.

The top of the engine: it may import every other subpackage, and nothing imports it.
"""

from __future__ import annotations

from uvac.cli.commands import main
from uvac.cli.edge import add_edge_commands
from uvac.cli.options import add_config_options, key_json_value, positive_int, prefixed

__all__ = [
    "add_config_options",
    "add_edge_commands",
    "key_json_value",
    "main",
    "positive_int",
    "prefixed",
]
