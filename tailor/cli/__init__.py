"""The ``tailor`` command line."""
