"""One module per `tfops` command: each parses nothing itself (cli.py does), talks
to the outside only through tfops.clients, and returns an exit code."""
