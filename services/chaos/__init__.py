"""The fault suite (`make chaos`): faults injected into a loaded stack, then the books."""
