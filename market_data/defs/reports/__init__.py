"""Reports: the status of every market, as an asset (visible in the UI) and a command."""
