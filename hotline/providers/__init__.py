"""Data providers answer lookups from a menu: a key (usually the digits the caller keyed) in,
a dict of fields out (spoken through the node's template), or None when nothing matches.
Anything else a provider does wrong becomes `ProviderError`, and the caller hears an apology
instead of the call failing."""

from hotline.providers.base import Provider, ProviderError
from hotline.providers.data import DataProvider, validate_document
from hotline.providers.http import HttpJsonProvider

__all__ = ["DataProvider", "HttpJsonProvider", "Provider", "ProviderError", "validate_document"]
