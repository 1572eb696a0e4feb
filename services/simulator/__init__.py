"""admuse simulator service (see DESIGN.md §1)."""
