"""The package version (one place; read by the resource, the principal's User-Agent and the meters' scopes)."""

__version__ = "0.1.0"
