"""The operator's plan catalog: the shipped default and loading a replacement file."""

from agentbilling.catalog.loader import CatalogError, default_catalog_path, load_catalog

__all__ = ["CatalogError", "default_catalog_path", "load_catalog"]
