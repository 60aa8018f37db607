"""BIDS Apps shipped with bidsbatch (``demo``: a small real one for demos and tests)."""
