"""Version of bgs_app, the single source read by setup.cfg and the CLI."""

__version__ = "0.1.0"
__packagename__ = "bgs_app"
