"""rescompile: a declarative spec compiler for residual networks."""

__version__ = "0.1.0"
