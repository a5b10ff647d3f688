"""Ready-made netdef models with torch's state_dict names (installed as netdef.models)."""
