"""lumbar-pathway-cds: a CDS Hooks 2.0 service for the lumbar conservative-care pathway."""

__version__ = "0.1.0"
