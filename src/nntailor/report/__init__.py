"""Tables, plots and HTML from result dictionaries. Imports no technique."""

from nntailor.report.format import format_bytes, format_count, format_energy, format_time

__all__ = ["format_bytes", "format_count", "format_energy", "format_time"]
