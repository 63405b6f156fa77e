"""Resolver backends: who answers swarmdns's questions.

- ``base``: what a backend is (the ``Backend`` and ``AsyncBackend`` protocols).
- ``default``: the process-wide default backend, and picking one for a call.
- ``threaded``: runs a synchronous backend for asyncio code.
- ``direct``: the default, asking the nameserver over swarmdns's own sockets;
  ``wire`` (its reader of DNS messages) and ``nameserver`` (where it sends).
- ``fleet``: a watch over many services asking a ``DirectBackend``'s
  nameservers itself, every query through one socket (``mux`` matches the
  answers).
- ``static`` and ``system``: answers from memory, and from the C library.
"""
