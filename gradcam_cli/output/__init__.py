"""Outputs: file names and atomic writes, pictures, encoding."""
