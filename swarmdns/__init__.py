"""Discover the tasks of a Docker Swarm service through Docker's embedded DNS.

Inside a Swarm container, ``<service>`` resolves to one virtual IP, while
``tasks.<service>`` lists the address of every running task. swarmdns reads
that list correctly, and ``swarmdns.testing`` provides a fake of the engine's
DNS server (with pytest fixtures) to test such code against.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
