"""heron-synapse: Heron moderation for a Matrix Synapse homeserver.

`HeronModule` is imported lazily so that the id mapping (`heron_synapse.ids`) can be used, for
example by tests and scripts, where Synapse itself is not installed.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["HeronModule"]


def __getattr__(name: str) -> Any:
    if name == "HeronModule":
        from heron_synapse.module import HeronModule

        return HeronModule
    raise AttributeError(name)
