"""Models that are not the article's code (the article's own networks live in ``reference_models/``)."""
