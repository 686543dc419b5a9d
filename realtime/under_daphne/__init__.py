"""Everything that knows daphne's and Twisted's insides, in one place, each part tested against
the pinned versions (requirements.txt) so that an upgrade that breaks it fails loudly:

- `requests`: a hook on daphne's request object: bodies over the limit refused before they
  are read, and a deadline for a whole request to arrive (tests/test_http_guard.py);
- `writes`: live frames written straight to the socket of a started response
  (tests/test_stream_direct_write.py, a test per recognised `send` wrapper);
- `shutdown`: SIGTERM ends every stream properly before daphne stops
  (tests/test_shutdown_processes.py).

Nothing here imports Twisted's reactor at import time: only daphne may install it.
"""
