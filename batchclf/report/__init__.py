"""``batchclf report``: summaries of job folders, on a terminal, as JSON/CSV/xlsx, and an HTML review sheet.

Reads only what :mod:`batchclf.jobs.folder` gives back (``results.csv`` for
rows, ``summary.json`` for metadata) and never imports TensorFlow.
"""
