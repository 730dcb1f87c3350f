from ratag_xr.cli import entry

entry()
