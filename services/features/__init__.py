"""admuse features service (see DESIGN.md §1): attribution join, rewards, stats, effects."""
