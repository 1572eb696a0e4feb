"""admuse inference service (see DESIGN.md §1)."""
