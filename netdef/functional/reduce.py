"""TODO: filled in by the op owner."""
__all__: list[str] = []
