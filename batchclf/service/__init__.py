"""Running the daemon under systemd: unit templates (``units/``), rendering, installing, status.

``render`` fills the shipped templates with a deployment's absolute paths,
taken from the same settings resolution as ``batchclf watch`` itself;
``install`` writes them where systemd looks; ``status`` reads the inbox
lock and the journal, so it answers without systemd.  No TensorFlow here.
"""
