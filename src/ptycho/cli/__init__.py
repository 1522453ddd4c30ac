"""The ``ptychopinn`` command line. Importing it loads no backend, so ``--help`` is fast."""
