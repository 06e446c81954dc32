"""The `tsfm` command line (installed as tsfm.cli)."""
