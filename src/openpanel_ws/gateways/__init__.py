"""One module per endpoint; `base` holds what they share."""
