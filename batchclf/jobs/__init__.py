"""Job folders: their layout and names, the row schema, and the report writers."""
