"""The package version, in one place (the package and its outputs report it)."""

__version__ = "0.1.0"
