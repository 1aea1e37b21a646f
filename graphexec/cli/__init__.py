"""The ``graphexec`` command line: ``main(argv) -> int`` over the public Python API."""
