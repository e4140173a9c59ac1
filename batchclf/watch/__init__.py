"""The inbox daemon (``batchclf watch``): stable-file detection, dynamic batching, exactly-once reports."""
