"""The pipeline definition, its custom components and resolver strategies, the KS metric."""
