"""Command-line interface: thin commands, each one calls the library."""
