"""The read model: filters, selections, pages, stats, export and datasets over the store."""
