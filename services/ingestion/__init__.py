"""admuse ingestion service (see DESIGN.md §1)."""
