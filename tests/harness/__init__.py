"""Real servers for the tests: started on free loopback ports, private dirs.

Each server is a ``ServerProcess``: ``start()``, ``stop()``, ``restart()``
(same port and data dir, so fault tests can take a backend away and bring it
back). Nothing here mocks a client library.
"""
