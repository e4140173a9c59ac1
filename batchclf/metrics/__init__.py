"""What an operator's monitoring reads: Prometheus text files and the drift state.

Layer: beside ``jobs/`` (it imports only the base modules and, for the
text files, ``prometheus_client``), so the daemon, the ``classify`` job,
``service status`` and ``report`` can all use it.  ``drift`` never imports
``prometheus_client``: ``report`` reads the drift state without it.
"""
