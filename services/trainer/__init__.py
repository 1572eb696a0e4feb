"""admuse trainer service (see DESIGN.md §1)."""
