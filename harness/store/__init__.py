"""Results on disk. ``schema``: the columns, the configuration key and the results path; ``csvfile``:
reading a results file that a killed run may have left torn; ``writer``: the run folder a sweep appends
to. Importing this package needs neither torch nor pandas."""
