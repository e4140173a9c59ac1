"""Reviews back into results: a person's decisions from the review sheet become a job's ``verified.csv``.

Layer: beside report and datasets (reads job folders through :mod:`batchclf.jobs`, writes through :mod:`batchclf.atomic`).
"""
