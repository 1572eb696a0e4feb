"""admuse features service (see DESIGN.md §1)."""
