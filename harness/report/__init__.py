"""Reports from committed runs: load -> tables, plots, reproduction. Never measures; no torch."""
