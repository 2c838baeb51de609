"""The command-line interface: a thin layer that parses flags, calls the library and prints."""
